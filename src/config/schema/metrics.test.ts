import { describe, expect, it } from 'vitest';
import { build, problemsWith } from '../../../test/support/config-fixtures.ts';

describe('metrics configuration', () => {
  const problems = (metrics: unknown): string[] => problemsWith({ metrics });

  it('is on by default, on the main port, for loopback only', () => {
    expect(build().metrics).toEqual({ enabled: true, allowed_ips: ['127.0.0.1/32', '::1/128'] });
  });

  it('takes a listener of its own, with defaults, and a comma-separated list of addresses', () => {
    expect(build({ metrics: { listen: {}, allowed_ips: '10.0.0.0/8, ::1' } }).metrics)
      .toEqual({ enabled: true, listen: { host: '127.0.0.1', port: 9464 }, allowed_ips: ['10.0.0.0/8', '::1'] });
    expect(build({ metrics: { listen: { host: '0.0.0.0', port: '9100' }, allowed_ips: [] } }).metrics)
      .toEqual({ enabled: true, listen: { host: '0.0.0.0', port: 9100 }, allowed_ips: [] });
  });

  it('refuses an empty list on the main port, and addresses that are not ones', () => {
    expect(problems({ allowed_ips: [] })).toEqual([
      'metrics.allowed_ips: an empty list would let anyone who reaches the gateway read /metrics on its public port: list the scrapers\' addresses, or set metrics.listen for a port of its own',
    ]);
    expect(problems({ enabled: false, allowed_ips: [] })).toEqual([]);
    expect(problems({ allowed_ips: ['prometheus.internal'], listen: { host: 'http://x', port: 70_000 } })).toEqual([
      'metrics.listen.host: must be a host name or IP address, without scheme, port or brackets (e.g. 0.0.0.0, ::, 127.0.0.1)',
      'metrics.listen.port: must be a whole number from 0 to 65535',
      'metrics.allowed_ips[0]: must be an IP address or CIDR range such as 127.0.0.1, 10.0.0.0/8 or ::1/128',
    ]);
  });
});
