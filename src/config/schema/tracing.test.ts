import { describe, expect, it } from 'vitest';
import { build, problemsWith } from '../../../test/support/config-fixtures.ts';

describe('tracing configuration', () => {
  const problems = (tracing: unknown): string[] => problemsWith({ tracing });

  it('is off by default, samples every trace and propagates, with endpoint and name left to OTEL_* variables', () => {
    expect(build().tracing).toEqual({ enabled: false, headers: {}, sample_ratio: 1, propagate_to_upstream: true });
  });

  it('takes text forms (from ${…} or an override) and vendor headers', () => {
    const tracing = build({
      tracing: { enabled: 'true', endpoint: 'https://otlp.example.com/v1/traces', sample_ratio: '0.25', headers: { 'x-honeycomb-team': 'key' }, service_name: 'mcp-gateway' },
    }).tracing;
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
