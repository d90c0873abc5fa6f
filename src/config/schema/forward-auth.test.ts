import { describe, expect, it } from 'vitest';
import { build, problemsWith } from '../../../test/support/config-fixtures.ts';

describe('forward_auth configuration', () => {
  const problems = (forward_auth: unknown): string[] => problemsWith({ forward_auth });

  it('is off by default and allows only loopback callers', () => {
    expect(build().forward_auth).toEqual({ enabled: false, allowed_ips: ['127.0.0.1/32', '::1/128'] });
  });

  it('reads a comma-separated text (from ${…} or an override) as a list', () => {
    expect(build({ forward_auth: { enabled: 'true', allowed_ips: '10.0.0.0/8, 127.0.0.1' } }).forward_auth)
      .toEqual({ enabled: true, allowed_ips: ['10.0.0.0/8', '127.0.0.1'] });
  });

  it('names each address that is not one, and an empty list', () => {
    expect(problems({ allowed_ips: ['10.0.0.0/8', 'proxy.internal', '10.0.0.0/33', '::1/129', '1.2.3.4/8/9'] })).toEqual([
      'forward_auth.allowed_ips[1]: must be an IP address or CIDR range such as 127.0.0.1, 10.0.0.0/8 or ::1/128',
      'forward_auth.allowed_ips[2]: has a prefix length that is not 0–32',
      'forward_auth.allowed_ips[3]: has a prefix length that is not 0–128',
      'forward_auth.allowed_ips[4]: must be an IP address or CIDR range such as 127.0.0.1, 10.0.0.0/8 or ::1/128',
    ]);
    expect(problems({ allowed_ips: [] })).toEqual(['forward_auth.allowed_ips: list at least one address: no proxy could call ForwardAuth']);
  });

  it('keeps services off the /forward-auth path', () => {
    expect(problemsWith({ services: { demo: { upstream: 'http://127.0.0.1:3001/mcp', path: '/forward-auth/mcp' } } }).map((line) => line.split(':')[0]))
      .toEqual(['services.demo.path']);
  });
});
