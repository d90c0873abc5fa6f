import { describe, expect, it } from 'vitest';
import { ConfigError } from '../config-error.ts';
import { buildConfig } from '../load.ts';

describe('metrics configuration', () => {
  const base = {
    public_url: 'https://mcp.example.com',
    secrets: { encryption_key: Buffer.alloc(32, 1).toString('base64') },
    identity_providers: [{ type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'gatehouse' }],
    access: { allow: { domains: ['example.com'] } },
    services: { demo: { upstream: 'http://127.0.0.1:3001/mcp' } },
  };
  const problems = (metrics: unknown): string[] => {
    try {
      buildConfig({ ...base, metrics }, { env: {} });
      return [];
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      return error.problems.map((problem) => `${problem.path}: ${problem.message}`);
    }
  };

  it('is on by default, on the main port, for loopback only', () => {
    expect(buildConfig(base, { env: {} }).metrics).toEqual({ enabled: true, allowed_ips: ['127.0.0.1/32', '::1/128'] });
  });

  it('takes a listener of its own, with defaults, and a comma-separated list of addresses', () => {
    expect(buildConfig({ ...base, metrics: { listen: {}, allowed_ips: '10.0.0.0/8, ::1' } }, { env: {} }).metrics)
      .toEqual({ enabled: true, listen: { host: '127.0.0.1', port: 9464 }, allowed_ips: ['10.0.0.0/8', '::1'] });
    expect(buildConfig({ ...base, metrics: { listen: { host: '0.0.0.0', port: '9100' }, allowed_ips: [] } }, { env: {} }).metrics)
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
