/**
 * Whether each service's MCP server can be reached, for /ready: a TCP connection to an upstream
 * URL's host and port (opened and closed at once: nothing is sent, so the server does no work
 * and logs nothing), or, for a `command` service, whether its program is found and executable
 * (it is not started).
 *
 * /ready is public and cheap to call, so results are kept for `ttlMs` per target and concurrent
 * checks of one target share one attempt: however often /ready is asked, an upstream sees at
 * most one connection per `ttlMs` from each gateway. /ready waits at most `waitMs` for a fresh
 * result (a probe that hangs on a silent firewall must not make /ready itself time out), and
 * answers with the previous one meanwhile.
 *
 * Details name the failure only (`ECONNREFUSED`, `timeout`, `not found or not executable`), never
 * the upstream's address or the program's path: /ready is readable by anyone.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

export interface Reachability {
  ready: boolean;
  detail?: string | undefined;
  /** When the result was found (ISO 8601). */
  checked_at: string;
}

export interface ReachabilityOptions {
  ttlMs?: number;
  timeoutMs?: number;
  waitMs?: number;
}

export interface ProgramTarget {
  program: string;
  /** The PATH the process would get. */
  path: string | undefined;
  cwd: string | undefined;
}

export interface ReachabilityChecks {
  /** An upstream URL (http, https, ws, wss). */
  upstream(url: string): Promise<Reachability>;
  /** A program the gateway would start. */
  program(target: ProgramTarget): Promise<Reachability>;
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'ws:': 80, 'https:': 443, 'wss:': 443 };

interface Cached {
  result?: Reachability | undefined;
  at: number;
  pending?: Promise<Reachability> | undefined;
}

export function createReachabilityChecks(options: ReachabilityOptions = {}): ReachabilityChecks {
  const ttlMs = options.ttlMs ?? 5000;
  const timeoutMs = options.timeoutMs ?? 1000;
  const waitMs = options.waitMs ?? 300;
  const cache = new Map<string, Cached>();

  const cached = (key: string, check: () => Promise<Reachability>): Promise<Reachability> => {
    let entry = cache.get(key);
    if (!entry) {
      entry = { at: 0 };
      cache.set(key, entry);
    }
    const now = Date.now();
    if (entry.result && now - entry.at < ttlMs) return Promise.resolve(entry.result);
    const current = entry;
    const pending = current.pending ?? check().then((result) => {
      current.result = result;
      current.at = Date.now();
      current.pending = undefined;
      return result;
    });
    current.pending = pending;
    const fallback = entry.result ?? { ready: false, detail: 'still checking', checked_at: new Date(now).toISOString() };
    return new Promise((done) => {
      const timer = setTimeout(() => done(fallback), waitMs).unref();
      void pending.then((result) => {
        clearTimeout(timer);
        done(result);
      });
    });
  };

  return {
    upstream(url) {
      let target: { host: string; port: number };
      try {
        const parsed = new URL(url);
        target = { host: parsed.hostname.replace(/^\[|\]$/g, ''), port: Number(parsed.port) || DEFAULT_PORTS[parsed.protocol] || 80 };
      } catch {
        return Promise.resolve({ ready: false, detail: 'invalid upstream URL', checked_at: new Date().toISOString() });
      }
      return cached(`tcp ${target.host} ${target.port}`, () => tcpConnect(target.host, target.port, timeoutMs));
    },
    program(target) {
      return cached(`program ${target.cwd ?? ''} ${target.path ?? ''} ${target.program}`, () => findProgram(target));
    },
  };
}

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<Reachability> {
  return new Promise((done) => {
    const socket = connect({ host, port });
    const finish = (detail?: string) => {
      clearTimeout(timer);
      socket.destroy();
      done({ ready: detail === undefined, ...(detail !== undefined ? { detail } : {}), checked_at: new Date().toISOString() });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs).unref();
    socket.once('connect', () => finish());
    socket.once('error', (error: NodeJS.ErrnoException) => finish(error.code ?? 'connection failed'));
  });
}

/** As spawn finds it: a path with a slash from the working directory, a bare name along PATH. */
async function findProgram(target: ProgramTarget): Promise<Reachability> {
  const base = target.cwd ?? process.cwd();
  const candidates = target.program.includes('/')
    ? [resolve(base, target.program)]
    : (target.path ?? '').split(delimiter).filter(Boolean).map((dir) => join(isAbsolute(dir) ? dir : resolve(base, dir), target.program));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      if ((await stat(candidate)).isFile()) return { ready: true, checked_at: new Date().toISOString() };
    } catch {
      // Not here: the next directory.
    }
  }
  return { ready: false, detail: 'the program is not found or not executable', checked_at: new Date().toISOString() };
}
