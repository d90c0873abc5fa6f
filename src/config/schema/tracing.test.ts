import { describe, expect, it } from 'vitest';
import { ConfigError } from '../config-error.ts';
import { buildConfig } from '../load.ts';

describe('tracing configuration', () => {
  const base = {
    public_url: 'https://mcp.example.com',
    secrets: { encryption_key: Buffer.alloc(32, 1).toString('base64') },
    identity_providers: [{ type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'gatehouse' }],
    access: { allow: { domains: ['example.com'] } },
    services: { demo: { upstream: 'http://127.0.0.1:3001/mcp' } },
  };
  const problems = (tracing: unknown): string[] => {
    try {
      buildConfig({ ...base, tracing }, { env: {} });
      return [];
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      return error.problems.map((problem) => `${problem.path}: ${problem.message}`);
    }
  };

  it('is off by default, samples every trace and propagates, with endpoint and name left to OTEL_* variables', () => {
    expect(buildConfig(base, { env: {} }).tracing).toEqual({ enabled: false, headers: {}, sample_ratio: 1, propagate_to_upstream: true });
  });

  it('takes text forms (from ${…} or an override) and vendor headers', () => {
    const tracing = buildConfig({
      ...base,
      tracing: { enabled: 'true', endpoint: 'https://otlp.example.com/v1/traces', sample_ratio: '0.25', headers: { 'x-honeycomb-team': 'key' }, service_name: 'mcp-gateway' },
    }, { env: {} }).tracing;
    expect(tracing).toMatchObject({ enabled: true, sample_ratio: 0.25, headers: { 'x-honeycomb-team': 'key' }, service_name: 'mcp-gateway' });
  });

  it('names the key of each problem', () => {
    expect(problems({ sample_ratio: 1.5, endpoint: 'grpc://collector:4317', headers: { 'bad header': 'x' }, exporter: 'jaeger' })).toEqual(expect.arrayContaining([
      'tracing.sample_ratio: must be a number from 0 to 1',
      'tracing.endpoint: must be an http:// or https:// URL',
      'tracing.headers["bad header"]: must be an HTTP header name such as X-User-Id',
      expect.stringMatching(/^tracing\.exporter: unknown key/),
    ]));
  });
});
