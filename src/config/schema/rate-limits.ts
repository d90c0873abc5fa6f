import { z } from 'zod';
import { booleanFromText, flag } from './primitives.ts';

/*
 * Rate limits on the authorization server's busiest open doors (`rate_limits`): registration,
 * authorize and token, counted in the store so several replicas share one count
 * (src/ops/rate-limits.ts). Each limit is written `N/second`, `N/minute`, `N/hour` or `N/day`
 * (a fixed window), or `off`.
 */

const WINDOWS: Readonly<Record<string, number>> = { second: 1, minute: 60, hour: 3600, day: 86_400 };

export interface RateLimit {
  limit: number;
  window_seconds: number;
}

const RATE = /^\s*(\d{1,9})\s*\/\s*(second|minute|hour|day)s?\s*$/i;

/** `30/minute` → { limit: 30, window_seconds: 60 }; `off` or false → null. */
const rate = z.preprocess(
  (value) => {
    const resolved = booleanFromText(value);
    return resolved === false || (typeof resolved === 'string' && resolved.trim().toLowerCase() === 'off') ? null : resolved;
  },
  z.string({ error: 'must be a rate such as 30/minute (per second, minute, hour or day), or off' })
    .superRefine((value, ctx) => {
      const match = RATE.exec(value);
      if (!match || Number(match[1]) < 1) ctx.addIssue({ code: 'custom', message: 'must be a rate such as 30/minute (a whole number ≥ 1 per second, minute, hour or day), or off', input: value });
    })
    .transform((value): RateLimit => {
      const [, count = '0', unit = 'minute'] = RATE.exec(value) ?? [];
      return { limit: Number(count), window_seconds: WINDOWS[unit.toLowerCase()] ?? 60 };
    })
    .nullable(),
);

/*
 * Defaults that real users never meet: hosted clients (Claude, ChatGPT) reach the gateway from
 * a few shared addresses for all their users, and clients that publish a client ID metadata
 * document share one client_id among all of theirs, so both kinds of key stay generous; they
 * stop loops and floods, not people.
 */
export const rateLimits = z.strictObject({
  enabled: flag().default(true),
  registration: z.strictObject({
    per_ip: rate.prefault('120/minute'),
    per_client_metadata: rate.prefault('60/minute'),
    global: rate.prefault('600/minute'),
  }).prefault({}),
  authorize: z.strictObject({
    per_ip: rate.prefault('300/minute'),
    per_client: rate.prefault('600/minute'),
  }).prefault({}),
  token: z.strictObject({
    per_ip: rate.prefault('1200/minute'),
    per_client: rate.prefault('600/minute'),
  }).prefault({}),
});
