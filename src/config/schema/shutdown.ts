import { z } from 'zod';
import { integer } from './primitives.ts';

/*
 * Graceful shutdown (`shutdown`): on SIGTERM the gateway stops taking connections, ends idle
 * event streams, and gives requests under way `grace_seconds` to finish (src/ops/shutdown.ts).
 */

export const shutdown = z.strictObject({
  grace_seconds: integer(0, 3600).default(10),
});
