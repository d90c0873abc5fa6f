import { isIP } from 'node:net';
import { z } from 'zod';
import { commaList, ipRange } from './forward-auth.ts';
import { flag, hostName, integer } from './primitives.ts';

/*
 * Prometheus metrics (`metrics`): on by default, at /metrics on the main port or on a listener of
 * their own, and readable only from the addresses listed. Metrics name services, client names
 * and traffic volumes: nothing for the internet, hence loopback only unless configured.
 */

const LOOPBACK = ['127.0.0.1/32', '::1/128'];

export const metrics = z.strictObject({
  enabled: flag().default(true),
  listen: z.strictObject({
    host: z.string().refine((host) => isIP(host) !== 0 || hostName.test(host), {
      error: 'must be a host name or IP address, without scheme, port or brackets (e.g. 0.0.0.0, ::, 127.0.0.1)',
    }).default('127.0.0.1'),
    port: integer(0, 65_535).default(9464),
  }).optional(),
  allowed_ips: z.preprocess(commaList, z.array(ipRange)).default(() => [...LOOPBACK]),
}).superRefine((value, ctx) => {
  if (value.enabled && value.listen === undefined && value.allowed_ips.length === 0) {
    ctx.addIssue({
      code: 'custom',
      path: ['allowed_ips'],
      message: 'an empty list would let anyone who reaches the gateway read /metrics on its public port: list the scrapers\' addresses, or set metrics.listen for a port of its own',
      input: value.allowed_ips,
    });
  }
});
