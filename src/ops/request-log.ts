/**
 * The access log: one line per request, written when its response ends, with the request id,
 * method, path (never the query string: OAuth callbacks carry codes and state there), status
 * and duration. Fastify's own request logging (a line at the start and one at the end) is
 * off: half the lines, and the end line missed requests whose client went away and responses
 * that the MCP endpoints and the authorization server write themselves.
 *
 * status 499 (nginx's "client closed request"): the client left before an answer began.
 *
 * Paths whose route has a sign-in handle in it (`/interaction/:uid`, `/signin/dev/:state`) are
 * logged as the route, not with the handle: a log reader must not be able to pick up a sign-in
 * under way (tracing does the same, tracing.ts).
 */
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { unredactedChild } from './logger.ts';

const LOGGED = Symbol('gatehouse.requestLog');
/** Route parameters that are sign-in handles (authz/sign-in.ts, consent-routes.ts). */
const HANDLE_IN_PATH = /:(uid|state)\b/;

interface Logged extends ServerResponse {
  [LOGGED]?: { log: Logger; id: string; started: number; method: string; path: string };
}

function ended(this: Logged): void {
  const entry = this[LOGGED];
  if (entry === undefined) return;
  this[LOGGED] = undefined;
  if (!entry.log.isLevelEnabled('info')) return;
  const statusCode = this.writableFinished || this.headersSent ? this.statusCode : 499;
  entry.log.info({
    // What request.log binds (Fastify's requestIdLogLabel), first: the line a request child writes.
    reqId: entry.id,
    // Through the logger's `req` serializer (ops/logger.ts), which keeps the path only.
    req: { method: entry.method, url: entry.path },
    res: { statusCode },
    responseTime: Math.round((performance.now() - entry.started) * 10) / 10,
  }, 'request completed');
}

/** Adds the hook that logs every request once; for a Fastify whose LogController has `disableRequestLogging`. */
export function logRequests(app: FastifyInstance): void {
  // The line's objects hold only a method, a path, an id and a status, none of which a redaction
  // path names: unredacted, it is the same line at a fraction of the cost (logger.ts).
  const log = unredactedChild(app.log as unknown as Logger, {});
  app.addHook('onRequest', (request, reply, done) => {
    const url = request.raw.url ?? '';
    const query = url.indexOf('?');
    const route = request.routeOptions.url;
    (reply.raw as Logged)[LOGGED] = {
      log,
      id: request.id,
      started: performance.now(),
      method: request.method,
      path: route !== undefined && HANDLE_IN_PATH.test(route) ? route : query === -1 ? url : url.slice(0, query),
    };
    reply.raw.once('close', ended);
    done();
  });
}
