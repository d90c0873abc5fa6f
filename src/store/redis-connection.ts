/**
 * The Redis engine's connection: its options as the store takes them and as the configuration
 * file writes them, and the ioredis client (standalone, Sentinel or Cluster) built from them.
 *
 * Failures: commands are never queued while the connection is down (`enableOfflineQueue:
 * false`) and time out after `commandTimeoutMs`, so a request fails with StoreUnavailableError
 * at once instead of hanging; the client reconnects in the background and the store works
 * again as soon as Redis is back. Commands whose reply was lost with the connection are not
 * re-sent: a consume whose outcome is unknown must fail, not be applied twice.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

export interface RedisTlsOptions {
  /** PEM file with the CA that signed the server's certificate (a private CA). */
  caFile?: string;
  /** false accepts any server certificate: for tests only. Default true. */
  rejectUnauthorized?: boolean;
}

export interface RedisStoreOptions {
  /** redis:// or rediss:// (TLS) URL of a standalone server; user, password and db may be in it. */
  url?: string;
  /** Password for the data nodes (overrides one in the URL). */
  password?: string;
  /** Prefix of every key and channel. Default `gatehouse:`. */
  keyPrefix?: string;
  /** TLS to the data nodes; `rediss://` turns it on as well. */
  tls?: boolean | RedisTlsOptions;
  /** Redis Sentinel: the master group `name` and the sentinels' `host:port` addresses. */
  sentinel?: { name: string; nodes: readonly string[] };
  /** Redis Cluster: `host:port` addresses of some of its nodes. */
  cluster?: { nodes: readonly string[] };
  /** How often index entries of expired records are cleaned up; 0 or less disables. Default 60 s. */
  sweepIntervalMs?: number;
  /** A command without a reply after this long fails. Default 2000 ms. */
  commandTimeoutMs?: number;
  /** Connecting (at start and on reconnects) gives up after this long. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Clock in epoch milliseconds; injectable so tests can move time. */
  now?: () => number;
}

/** `store` as written in the configuration file. */
export interface RedisStoreConfig {
  type: 'redis';
  url?: string;
  password?: string;
  key_prefix?: string;
  tls?: boolean | { ca_file?: string; reject_unauthorized?: boolean };
  sentinel?: { name: string; nodes: readonly string[] };
  cluster?: { nodes: readonly string[] };
}

export type Client = Redis | Cluster;

export const DEFAULT_KEY_PREFIX = 'gatehouse:';
const DEFAULT_COMMAND_TIMEOUT_MS = 2000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
/** Reconnect delays grow to this and stay there, so recovery after an outage is quick. */
const MAX_RECONNECT_DELAY_MS = 1000;

export function createClient(options: RedisStoreOptions): Client {
  const tls = tlsOptions(options.tls);
  const common: RedisOptions = {
    lazyConnect: true,
    // Fail fast while disconnected instead of queueing requests until Redis is back.
    enableOfflineQueue: false,
    // In-flight commands fail when the connection drops, and are not re-sent after it returns.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
    connectTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    retryStrategy: (attempt) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
    ...(options.password !== undefined ? { password: options.password } : {}),
    ...(tls ? { tls } : {}),
  };
  const modes = [options.url, options.sentinel, options.cluster].filter((mode) => mode !== undefined);
  if (modes.length !== 1) throw new Error('redis store: give exactly one of url, sentinel or cluster');
  if (options.cluster) {
    const { retryStrategy: _ignored, enableOfflineQueue: _alsoIgnored, ...perNode } = common;
    const clusterOptions: ClusterOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: (attempt) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
      redisOptions: perNode,
    };
    return new Cluster(options.cluster.nodes.map(parseNode), clusterOptions);
  }
  if (options.sentinel) {
    return new Redis({
      ...common,
      name: options.sentinel.name,
      sentinels: options.sentinel.nodes.map(parseNode),
      ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
    });
  }
  return new Redis(options.url as string, common);
}

function tlsOptions(tls: RedisStoreOptions['tls']): ConnectionOptions | undefined {
  if (tls === undefined || tls === false) return undefined;
  if (tls === true) return {};
  return {
    ...(tls.caFile !== undefined ? { ca: readFileSync(tls.caFile) } : {}),
    ...(tls.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
  };
}

/** `host:port` or `[v6]:port`. */
export function parseNode(node: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(node);
  if (!match) throw new Error(`redis node ${JSON.stringify(node)} must be host:port`);
  return { host: (match[1] ?? match[2]) as string, port: Number(match[3]) };
}

/** Wraps the prefix in braces: a Cluster hashes only the tag, so every key shares one slot. */
export function hashTagged(keyPrefix: string): string {
  if (keyPrefix === '') throw new Error('redis store: key_prefix must not be empty');
  return `{${keyPrefix}}`;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
