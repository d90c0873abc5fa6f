import { describe, expect, it } from 'vitest';
import { CircuitBreaker, CircuitBreakers, isFailureStatus, type CircuitState } from './circuit-breaker.ts';

const options = { failures: 3, openSeconds: 10, maxOpenSeconds: 30 };

function breakerWithLog() {
  const changes: CircuitState[] = [];
  const breaker = new CircuitBreaker('calc', options, (_service, state) => changes.push(state));
  return { breaker, changes };
}

describe('CircuitBreaker', () => {
  it('opens after the configured number of consecutive failures, not before', () => {
    const { breaker, changes } = breakerWithLog();
    const t = 1_000_000;
    for (let i = 0; i < 2; i++) {
      expect(breaker.admit(t)).toBe(true);
      breaker.failed(t);
    }
    expect(breaker.state).toBe('closed');
    breaker.succeeded();
    // The success reset the count: two more failures still leave it closed.
    breaker.failed(t);
    breaker.failed(t);
    expect(breaker.state).toBe('closed');
    breaker.failed(t);
    expect(breaker.state).toBe('open');
    expect(changes).toEqual(['open']);
    expect(breaker.admit(t + 1)).toBe(false);
    expect(breaker.retryAfterSeconds(t + 1)).toBe(10);
    expect(breaker.retryAfterSeconds(t + 9_500)).toBe(1);
  });

  it('lets exactly one probe through after the cool-down; its success closes the circuit', () => {
    const { breaker, changes } = breakerWithLog();
    const t = 1_000_000;
    for (let i = 0; i < 3; i++) breaker.failed(t);
    expect(breaker.admit(t + 9_999)).toBe(false);
    expect(breaker.admit(t + 10_000)).toBe(true);
    expect(breaker.state).toBe('half_open');
    expect(breaker.admit(t + 10_001)).toBe(false);
    breaker.succeeded();
    expect(breaker.state).toBe('closed');
    expect(breaker.admit(t + 10_002)).toBe(true);
    expect(changes).toEqual(['open', 'half_open', 'closed']);
  });

  it('re-opens on a failed probe for twice as long, capped at maxOpenSeconds', () => {
    const { breaker } = breakerWithLog();
    let t = 1_000_000;
    for (let i = 0; i < 3; i++) breaker.failed(t);
    const waits: number[] = [];
    for (let round = 0; round < 4; round++) {
      const wait = breaker.retryAfterSeconds(t);
      waits.push(wait);
      t += wait * 1000;
      expect(breaker.admit(t)).toBe(true);
      breaker.failed(t);
      expect(breaker.state).toBe('open');
    }
    expect(waits).toEqual([10, 20, 30, 30]);
    // A success after all resets the wait to the first cool-down.
    t += 30_000;
    expect(breaker.admit(t)).toBe(true);
    breaker.succeeded();
    for (let i = 0; i < 3; i++) breaker.failed(t);
    expect(breaker.retryAfterSeconds(t)).toBe(10);
  });

  it('frees the probe slot when the probe ends without a verdict, or stays silent too long', () => {
    const { breaker, changes } = breakerWithLog();
    const t = 1_000_000;
    for (let i = 0; i < 3; i++) breaker.failed(t);
    expect(breaker.admit(t + 10_000)).toBe(true);
    expect(breaker.admit(t + 10_050)).toBe(false);
    breaker.released();
    // Still half-open, said once: the abandoned probe decided nothing.
    expect(breaker.state).toBe('half_open');
    expect(breaker.admit(t + 10_100)).toBe(true);
    expect(changes).toEqual(['open', 'half_open']);
    // This probe never reports: after another cool-down the next caller probes instead.
    expect(breaker.admit(t + 15_000)).toBe(false);
    expect(breaker.admit(t + 20_100)).toBe(true);
  });

  it('counts only 502, 503 and 504 answers as failures', () => {
    expect([500, 501, 502, 503, 504, 404, 200].filter(isFailureStatus)).toEqual([502, 503, 504]);
  });
});

describe('CircuitBreakers', () => {
  it('keeps a service breaker (and its state) while its upstream and settings are unchanged, and logs changes', () => {
    const lines: Array<[string, string]> = [];
    const seen: string[] = [];
    const breakers = new CircuitBreakers({
      log: { warn: (_d, message) => lines.push(['warn', message]), info: (_d, message) => lines.push(['info', message]) },
      onStateChange: (service, state) => seen.push(`${service}:${state}`),
    });
    const first = breakers.for('calc', 'http://a', options)!;
    for (let i = 0; i < 3; i++) first.failed();
    const kept = breakers.for('calc', 'http://a', { ...options })!;
    expect(kept).toBe(first);
    expect(kept.state).toBe('open');
    const changed = breakers.for('calc', 'http://a', { ...options, failures: 4 })!;
    expect(changed).not.toBe(first);
    expect(changed.state).toBe('closed');
    expect(breakers.for('calc', 'http://a', null)).toBeUndefined();
    expect(breakers.for('calc', 'http://a', options)).not.toBe(changed);
    const again = breakers.for('calc', 'http://a', options);
    expect(breakers.for('calc', 'http://b', options)).not.toBe(again);
    // Each new breaker reports its (closed) state, so a replaced open one does not stay "open" in the metrics.
    expect(seen).toEqual(['calc:closed', 'calc:open', 'calc:closed', 'calc:closed', 'calc:closed', 'calc:closed']);
    expect(lines).toEqual([['warn', 'circuit opened: calc is failing; requests get 503 for 10 s']]);
  });

  it('logs the open state with snake_case fields, as every other log event', () => {
    const details: object[] = [];
    const breakers = new CircuitBreakers({ log: { warn: (detail) => details.push(detail), info: () => undefined } });
    const breaker = breakers.for('calc', 'http://a', options)!;
    for (let i = 0; i < 3; i++) breaker.failed();
    expect(details).toEqual([{ event: 'circuit.open', service: 'calc', failures: 3, open_seconds: 10 }]);
  });
});
