import { z } from 'zod';
import { flag } from './primitives.ts';

/*
 * Configuration reload (`reload`). `gatehouse serve` always reloads its file on SIGHUP; with
 * `watch` it also reloads when the file changes (ops/config-watch.ts).
 */

export const reload = z.strictObject({
  watch: flag().default(false),
});
