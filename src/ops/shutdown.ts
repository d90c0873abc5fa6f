/**
 * Graceful shutdown (SIGTERM, `gateway.close()`), in this order:
 *
 *   1. at once     no new connections (server.close); idle kept-alive connections and ones
 *                  that never carried a request close; a request that still arrives on a busy
 *                  connection gets 503 with `Connection: close` (Fastify's return503OnClosing);
 *                  GET event streams end cleanly (they are idle by design and never finish),
 *                  WebSockets close with 1001 (websocket.ts)
 *   2. meanwhile   requests under way finish, their connections close after the answer
 *   3. deadline    after `shutdown.grace_seconds`: event streams still open (tool calls answered
 *                  as a stream) end cleanly, and a moment later every connection left is cut
 *
 * A client whose stream ended reconnects, to another replica behind the load balancer, with
 * `Last-Event-ID` where the server supports resuming.
 */
import type { Server } from 'node:http';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { OpenStreams } from '../proxy/open-streams.ts';

export interface ShutdownOptions {
  streams: OpenStreams;
  graceMs: number;
  log: FastifyBaseLogger;
  /** Closes connections that never carried a request (connections.ts). */
  closeUnused(): void;
}

export interface GracefulShutdown {
  /** Resolves when the last connection has closed, or shortly after the deadline cut the rest. */
  drained(): Promise<void>;
}

/** How long ended streams get to send their last bytes before the remaining connections are cut. */
const FLUSH_MS = 250;
/** After the cut, how long to wait for sockets to report closed before the shutdown moves on. */
const SETTLE_MS = 1000;

/**
 * Starts the drain from a `preClose` hook: register it before any other preClose hook, so
 * the server stops accepting connections before the other hooks run.
 */
export function registerGracefulShutdown(app: FastifyInstance, options: ShutdownOptions): GracefulShutdown {
  let drained: Promise<void> | undefined;
  app.addHook('preClose', async () => {
    drained ??= drain(app.server, options);
  });
  return { drained: () => drained ?? Promise.resolve() };
}

function drain(server: Server, { streams, graceMs, log, closeUnused }: ShutdownOptions): Promise<void> {
  const started = Date.now();
  const ended = streams.drain();
  log.info({ event: 'shutdown.start', grace_seconds: graceMs / 1000, streams_ended: ended, streams_open: streams.size },
    'shutting down: no new connections; requests under way may finish');
  return new Promise((resolve) => {
    const timers: NodeJS.Timeout[] = [];
    let done = false;
    const finish = (how: string) => {
      if (done) return;
      done = true;
      for (const timer of timers) clearTimeout(timer);
      log.info({ event: 'shutdown.drained', how, ms: Date.now() - started }, how === 'closed' ? 'every connection closed' : 'shutdown deadline passed; connections cut');
      resolve();
    };
    server.close(() => finish('closed'));
    closeUnused();
    timers.push(setTimeout(() => {
      const cut = streams.endAll();
      log.warn({ event: 'shutdown.deadline', grace_seconds: graceMs / 1000, streams_ended: cut },
        'requests still under way at the shutdown deadline: event streams ended, other connections are cut');
      timers.push(setTimeout(() => {
        server.closeAllConnections();
        timers.push(setTimeout(() => finish('cut'), SETTLE_MS));
      }, FLUSH_MS));
    }, graceMs));
  });
}
