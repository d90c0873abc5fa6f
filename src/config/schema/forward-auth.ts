import { isIP } from 'node:net';
import { z } from 'zod';
import { flag } from './primitives.ts';

/*
 * ForwardAuth (`forward_auth`): the endpoint another reverse proxy (nginx auth_request, Traefik
 * forwardAuth, Caddy forward_auth) asks whether a request may pass. Off by default, and only
 * for the proxies' own addresses: a 200 from it carries the identity headers servers trust.
 */

/** Why a string is not an IP address or CIDR range, or undefined. */
function ipRangeProblem(value: string): string | undefined {
  const [address = '', prefix, ...rest] = value.split('/');
  const version = isIP(address);
  const example = 'must be an IP address or CIDR range such as 127.0.0.1, 10.0.0.0/8 or ::1/128';
  if (version === 0 || rest.length > 0) return example;
  if (prefix === undefined) return undefined;
  const bits = version === 4 ? 32 : 128;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= bits ? undefined : `has a prefix length that is not 0–${bits}`;
}

/** An IP address or CIDR range (also metrics.allowed_ips). */
export const ipRange = z.string().superRefine((value, ctx) => {
  const problem = ipRangeProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: value });
});

/** From `${…}` or an override, `10.0.0.0/8,127.0.0.1` is read as a list (as `trust_proxy` is). */
export function commaList(value: unknown): unknown {
  return typeof value === 'string' ? value.split(',').map((item) => item.trim()).filter((item) => item !== '') : value;
}

export const forwardAuth = z.strictObject({
  enabled: flag().default(false),
  allowed_ips: z.preprocess(commaList, z.array(ipRange).min(1, { error: 'list at least one address: no proxy could call ForwardAuth' }))
    .default(() => ['127.0.0.1/32', '::1/128']),
});
