import { z } from 'zod';
import { always, flag, integer, text, url } from './primitives.ts';

/* The store (`store`): memory, sqlite, redis or postgres, and how to reach it. */

const defaultStorePath = './data/gatehouse.db';

const redisUrl = url(
  (_, parsed) => (parsed.protocol === 'redis:' || parsed.protocol === 'rediss:' ? undefined : 'must be a redis:// or rediss:// (TLS) URL'),
  'redis://127.0.0.1:6379',
);

const postgresUrl = url(
  (_, parsed) => (parsed.protocol === 'postgres:' || parsed.protocol === 'postgresql:' ? undefined : 'must be a postgres:// URL'),
  'postgres://gatehouse@127.0.0.1:5432/gatehouse',
);

const hostPort = z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, {
  error: 'must be host:port, such as redis-1:26379 or [::1]:6379',
});

const hostPorts = z.array(hostPort).min(1, { error: 'must list at least one host:port' });

/** TLS to a store: on, off, or on with a private CA or (for tests) without verification. */
const storeTls = z.union([
  flag(),
  z.strictObject({ ca_file: text.optional(), reject_unauthorized: flag().optional() }),
], { error: 'must be true, false, or a mapping with ca_file and reject_unauthorized' });

const redisStore = z.strictObject({
  type: z.literal('redis'),
  url: redisUrl.optional(),
  password: text.optional(),
  key_prefix: text.default('gatehouse:'),
  tls: storeTls.optional(),
  sentinel: z.strictObject({ name: text, nodes: hostPorts }).optional(),
  cluster: z.strictObject({ nodes: hostPorts }).optional(),
}).superRefine((store, ctx) => {
  const given = (['url', 'sentinel', 'cluster'] as const).filter((key) => store[key] !== undefined);
  if (given.length === 1) return;
  ctx.addIssue({
    code: 'custom',
    path: given.length === 0 ? ['url'] : [given[1] as string],
    message: given.length === 0
      ? 'is required: a redis:// URL, or sentinel or cluster nodes'
      : `cannot be combined with ${given[0]}: give one of url, sentinel or cluster (password and tls apply to all three)`,
  });
}, always);

const postgresStore = z.strictObject({
  type: z.literal('postgres'),
  url: postgresUrl,
  pool_size: integer(1, 100).default(10),
  schema: z.string().regex(/^[a-z_][a-z0-9_]{0,29}$/, {
    error: 'must be a lower-case SQL name of at most 30 characters: letters, digits and _, not starting with a digit',
  }).default('gatehouse'),
  ssl: storeTls.optional(),
});

/** `store`: where the gateway keeps clients, grants, tokens and sessions. */
export const store = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('memory') }),
  z.strictObject({ type: z.literal('sqlite'), path: text.default(defaultStorePath) }),
  redisStore,
  postgresStore,
]).prefault({ type: 'sqlite' });
