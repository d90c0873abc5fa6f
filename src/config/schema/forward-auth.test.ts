import { describe, expect, it } from 'vitest';
import { ConfigError } from '../config-error.ts';
import { buildConfig } from '../load.ts';

describe('forward_auth configuration', () => {
  const base = {
    public_url: 'https://mcp.example.com',
    secrets: { encryption_key: Buffer.alloc(32, 1).toString('base64') },
    identity_providers: [{ type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'gatehouse' }],
    access: { allow: { domains: ['example.com'] } },
    services: { demo: { upstream: 'http://127.0.0.1:3001/mcp' } },
  };
  const problems = (forward_auth: unknown): string[] => {
    try {
      buildConfig({ ...base, forward_auth }, { env: {} });
      return [];
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      return error.problems.map((problem) => `${problem.path}: ${problem.message}`);
    }
  };

  it('is off by default and allows only loopback callers', () => {
    expect(buildConfig(base, { env: {} }).forward_auth).toEqual({ enabled: false, allowed_ips: ['127.0.0.1/32', '::1/128'] });
  });

  it('reads a comma-separated text (from ${…} or an override) as a list', () => {
    expect(buildConfig({ ...base, forward_auth: { enabled: 'true', allowed_ips: '10.0.0.0/8, 127.0.0.1' } }, { env: {} }).forward_auth)
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
    const error = (() => {
      try {
        buildConfig({ ...base, services: { demo: { upstream: 'http://127.0.0.1:3001/mcp', path: '/forward-auth/mcp' } } }, { env: {} });
      } catch (caught) {
        return caught as ConfigError;
      }
      return undefined;
    })();
    expect(error?.problems.map((problem) => problem.path)).toEqual(['services.demo.path']);
  });
});
