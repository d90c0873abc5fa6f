import { describe, expect, it } from 'vitest';
import { build, problemsWith } from '../../../test/support/config-fixtures.ts';

/** rate_limits, shutdown and services.<name>.circuit_breaker. */
describe('resilience configuration', () => {
  const problems = (changes: Record<string, unknown>, env: Record<string, string> = {}): string[] => problemsWith(changes, env);

  it('has defaults: a breaker per service, generous rate limits, 10 s of grace', () => {
    const config = build();
    expect(config.services.demo?.circuit_breaker).toEqual({ failures: 5, open_seconds: 10, max_open_seconds: 60 });
    expect(config.rate_limits.enabled).toBe(true);
    expect(config.rate_limits.registration.per_client_metadata).toEqual({ limit: 60, window_seconds: 60 });
    expect(config.rate_limits.token.per_ip).toEqual({ limit: 1200, window_seconds: 60 });
    expect(config.shutdown).toEqual({ grace_seconds: 10 });
  });

  it('reads rates in any unit, plural or not, and off (or false) as no limit; also from overrides', () => {
    const config = build(
      { rate_limits: { token: { per_ip: '5/Seconds', per_client: 'off' }, authorize: { per_ip: false, per_client: '2/day' } } },
      { GATEHOUSE_RATE_LIMITS__REGISTRATION__GLOBAL: '100/hour', GATEHOUSE_SERVICES__DEMO__CIRCUIT_BREAKER: 'false', GATEHOUSE_SHUTDOWN__GRACE_SECONDS: '30' },
    );
    expect(config.rate_limits.token).toEqual({ per_ip: { limit: 5, window_seconds: 1 }, per_client: null });
    expect(config.rate_limits.authorize).toEqual({ per_ip: null, per_client: { limit: 2, window_seconds: 86_400 } });
    expect(config.rate_limits.registration.global).toEqual({ limit: 100, window_seconds: 3600 });
    expect(config.services.demo?.circuit_breaker).toBeNull();
    expect(config.shutdown.grace_seconds).toBe(30);
  });

  it('names the key path of every mistake', () => {
    expect(problems({
      rate_limits: { registration: { per_ip: '30 per minute', global: '0/minute' }, token: { per_client: 5 } },
      services: { demo: { upstream: 'http://127.0.0.1:3001/mcp', circuit_breaker: { failures: 0, open_seconds: 30, max_open_seconds: 20 } } },
      shutdown: { grace_seconds: -1 },
    })).toEqual([
      'services.demo.circuit_breaker.failures: must be a whole number from 1 to 1000',
      'services.demo.circuit_breaker.max_open_seconds: must be at least open_seconds (30)',
      'rate_limits.registration.per_ip: must be a rate such as 30/minute (a whole number ≥ 1 per second, minute, hour or day), or off',
      'rate_limits.registration.global: must be a rate such as 30/minute (a whole number ≥ 1 per second, minute, hour or day), or off',
      'rate_limits.token.per_client: must be a rate such as 30/minute (per second, minute, hour or day), or off',
      'shutdown.grace_seconds: must be a whole number from 0 to 3600',
    ]);
  });
});
