import { z } from 'zod';
import { always, integer, isRecord, toggle, wrongType } from './primitives.ts';

/*
 * A service's circuit breaker (`services.<name>.circuit_breaker`): on by default; `false` turns
 * it off, a mapping changes its settings. How it behaves: src/proxy/circuit-breaker.ts.
 */

const breakerSettings = z.strictObject(
  {
    failures: integer(1, 1000).default(5),
    open_seconds: integer(1, 3600).default(10),
    max_open_seconds: integer(1, 86_400).default(60),
  },
  { error: wrongType('must be true, false, or a mapping with failures, open_seconds and max_open_seconds') },
).superRefine((value, ctx) => {
  if (!isRecord(value) || typeof value.open_seconds !== 'number' || typeof value.max_open_seconds !== 'number') return;
  if (value.max_open_seconds < value.open_seconds) {
    ctx.addIssue({ code: 'custom', path: ['max_open_seconds'], message: `must be at least open_seconds (${value.open_seconds})`, input: value.max_open_seconds });
  }
}, always);

export const circuitBreaker = z.preprocess(toggle(true), breakerSettings.nullable());
