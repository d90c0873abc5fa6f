/**
 * One client session with a legacy HTTP+SSE MCP server (protocol 2024-11-05, "HTTP with SSE"):
 * the gateway holds the server's event stream (`GET <upstream>`, whose first event, `endpoint`,
 * names the URL to POST messages to) and routes what arrives on it:
 *
 *   a response                       to the client POST that carried its request
 *   progress for a pending request   to that request's POST stream (its `progressToken`)
 *   anything else the server sends   to the client's GET stream; with none open, to an open
 *                                    POST stream; else kept (bounded) until a GET stream opens
 *
 * The server's messages arrive on one stream in the order it sent them, so each is delivered in
 * that order too. The session ends when the server's stream ends, on DELETE, idle, or shutdown.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { Agent, errors as undiciErrors, request } from 'undici';
import { jsonRpcError, type JsonRpcErrorKind, type JsonRpcId } from '../errors/index.ts';
import { messageEvent, readEventStream } from './event-stream.ts';

/** Server messages kept for a GET stream that is not open yet; beyond, the oldest are dropped. */
const BACKLOG_LIMIT = 200;
/** A comment line on idle client streams, so intermediaries keep them open (MCP transports: keep-alive). */
const KEEPALIVE_MS = 25_000;

// No cap on connections per upstream: every open SSE stream holds one, and a cap would stall
// streams beyond it (seen at 512 in the SSE benchmark).
const agent = new Agent({ keepAliveTimeout: 30_000, connections: null, pipelining: 1 });

export interface SessionLog {
  debug(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
  error(details: Record<string, unknown>, message: string): void;
}

/** Why the upstream could not take part: the status and JSON-RPC error to answer the client with. */
export class UpstreamError extends Error {
  readonly status: number;
  readonly kind: JsonRpcErrorKind;
  readonly clientMessage: string;

  constructor(status: number, kind: JsonRpcErrorKind, clientMessage: string, detail: string = clientMessage) {
    super(detail);
    this.name = 'UpstreamError';
    this.status = status;
    this.kind = kind;
    this.clientMessage = clientMessage;
  }
}

/** The messages a client POST waits for. */
export interface Exchange {
  /** Keys (idKey) of the requests whose responses end the exchange. */
  readonly awaiting: Set<string>;
  /** Keys of the `progressToken`s of its requests. */
  readonly progressTokens: Set<string>;
  /** Whether the client reads an event stream (it may then get other messages too). */
  readonly streaming: boolean;
  /** A message for this exchange: a response (`key` set) or a related notification or request. */
  deliver(json: string, key?: string): void;
}

/** A map key for a JSON-RPC id or progress token that keeps 1 and "1" apart. */
export function idKey(id: unknown): string {
  return `${typeof id}:${String(id)}`;
}

interface RoutedMessage {
  id?: unknown;
  method?: unknown;
  result?: unknown;
  error?: unknown;
  params?: { progressToken?: unknown };
}

export class LegacySession {
  /** The `Mcp-Session-Id` the client knows it by: 192 random bits, visible ASCII (Streamable HTTP, session management). */
  readonly id = randomBytes(24).toString('base64url');
  readonly owner: string;
  lastUsed = Date.now();
  #postUrl: URL;
  #controller: AbortController;
  #log: SessionLog;
  #timeoutMs: number;
  #waiting = new Map<string, Exchange>();
  #progress = new Map<string, Exchange>();
  #streams = new Set<Exchange>();
  #listener: ServerResponse | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #backlog: string[] = [];
  #closed = false;
  #onClose: Array<() => void> = [];

  private constructor(owner: string, postUrl: URL, controller: AbortController, log: SessionLog, timeoutMs: number) {
    this.owner = owner;
    this.#postUrl = postUrl;
    this.#controller = controller;
    this.#log = log;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Opens the server's event stream and waits for its `endpoint` event (each within
   * `timeoutMs`). The endpoint must be on the upstream's origin: identity headers and tokens
   * go with every POST, and must not follow a server's word to another host.
   */
  static async open(options: { upstream: string; headers: Record<string, string>; timeoutMs: number; owner: string; log: SessionLog }): Promise<LegacySession> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), options.timeoutMs);
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(options.upstream, {
        dispatcher: agent,
        method: 'GET',
        headers: { ...options.headers, accept: 'text/event-stream' },
        signal: controller.signal,
        headersTimeout: options.timeoutMs,
        bodyTimeout: 0,
      });
    } catch (error) {
      clearTimeout(timer);
      throw controller.signal.aborted || error instanceof undiciErrors.HeadersTimeoutError
        ? new UpstreamError(504, 'upstream_timeout', 'the MCP server did not answer in time')
        : new UpstreamError(502, 'upstream_unavailable', 'the MCP server is unreachable', String(error));
    }
    const type = String(response.headers['content-type'] ?? '');
    if (response.statusCode !== 200 || !type.startsWith('text/event-stream')) {
      clearTimeout(timer);
      controller.abort();
      response.body.destroy();
      throw new UpstreamError(502, 'upstream_unavailable', 'the MCP server did not open an event stream',
        `GET ${options.upstream} answered ${response.statusCode} ${type}`);
    }
    const events = readEventStream(response.body);
    let session: LegacySession;
    try {
      const first = await events.next();
      clearTimeout(timer);
      // 2024-11-05 transports: "the server MUST send an endpoint event containing a URI for the
      // client to use for sending messages" as the first event.
      if (first.done || first.value.event !== 'endpoint') {
        throw new UpstreamError(502, 'upstream_unavailable', 'the MCP server did not name its message endpoint', 'no endpoint event first');
      }
      const postUrl = URL.parse(first.value.data.trim(), options.upstream);
      if (!postUrl || postUrl.origin !== new URL(options.upstream).origin) {
        throw new UpstreamError(502, 'upstream_unavailable', 'the MCP server named a message endpoint on another origin', `endpoint ${first.value.data}`);
      }
      session = new LegacySession(options.owner, postUrl, controller, options.log, options.timeoutMs);
    } catch (error) {
      clearTimeout(timer);
      controller.abort();
      response.body.destroy();
      if (error instanceof UpstreamError) throw error;
      throw controller.signal.aborted
        ? new UpstreamError(504, 'upstream_timeout', 'the MCP server did not answer in time')
        : new UpstreamError(502, 'upstream_unavailable', 'the MCP server is unreachable', String(error));
    }
    void session.#read(events);
    return session;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Whether a client stream or request depends on it (an idle session has neither). */
  get busy(): boolean {
    return this.#listener !== undefined || this.#streams.size > 0 || this.#waiting.size > 0;
  }

  onClose(callback: () => void): void {
    this.#onClose.push(callback);
  }

  /**
   * Waits for the responses to `exchange`'s requests. False when one of its ids is already
   * awaited in this session (JSON-RPC ids identify a request within the session).
   */
  expect(exchange: Exchange, progressTokens: readonly unknown[]): boolean {
    if ([...exchange.awaiting].some((key) => this.#waiting.has(key))) return false;
    for (const key of exchange.awaiting) this.#waiting.set(key, exchange);
    for (const token of progressTokens) {
      exchange.progressTokens.add(idKey(token));
      this.#progress.set(idKey(token), exchange);
    }
    if (exchange.streaming) this.#streams.add(exchange);
    return true;
  }

  /** The client gave up on `exchange` (it went away, or its request failed): responses for it are dropped. */
  forget(exchange: Exchange): void {
    for (const key of exchange.awaiting) if (this.#waiting.get(key) === exchange) this.#waiting.delete(key);
    for (const key of exchange.progressTokens) if (this.#progress.get(key) === exchange) this.#progress.delete(key);
    this.#streams.delete(exchange);
  }

  /** POSTs one message to the server's endpoint; the server answers 202 and sends any response on its stream. */
  async post(body: Buffer | string, headers: Record<string, string>): Promise<void> {
    this.lastUsed = Date.now();
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(this.#postUrl, {
        dispatcher: agent,
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
    } catch (error) {
      throw error instanceof undiciErrors.HeadersTimeoutError
        ? new UpstreamError(504, 'upstream_timeout', 'the MCP server did not answer in time')
        : new UpstreamError(502, 'upstream_unavailable', 'the MCP server is unreachable', String(error));
    }
    await response.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
    if (response.statusCode >= 200 && response.statusCode < 300) return;
    if (response.statusCode === 404) {
      // The server no longer knows its session: end ours, so the client initializes again.
      this.close('the MCP server ended the session');
      throw new UpstreamError(404, 'not_found', 'the session has ended; initialize a new one', `POST answered 404`);
    }
    throw new UpstreamError(502, 'upstream_unavailable', `the MCP server refused the message (status ${response.statusCode})`);
  }

  /** The client's GET stream: server-initiated messages go here; a newer GET stream replaces an older one. */
  listen(res: ServerResponse): void {
    this.lastUsed = Date.now();
    const previous = this.#listener;
    this.#listener = res;
    previous?.end();
    for (const json of this.#backlog.splice(0)) res.write(messageEvent(json));
    clearInterval(this.#keepalive);
    this.#keepalive = setInterval(() => this.#listener?.write(': keep-alive\n\n'), KEEPALIVE_MS).unref();
    res.once('close', () => {
      if (this.#listener !== res) return;
      this.#listener = undefined;
      this.lastUsed = Date.now();
      clearInterval(this.#keepalive);
    });
  }

  /** Ends the session: the server's stream is closed, pending requests get an error, the GET stream ends. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#log.debug({ event: 'legacy_sse.session_closed', reason }, 'legacy SSE session closed');
    this.#controller.abort();
    clearInterval(this.#keepalive);
    for (const [key, exchange] of this.#waiting) {
      exchange.deliver(JSON.stringify(jsonRpcError('upstream_unavailable', 'the MCP server session ended', idFromKey(key))), key);
    }
    this.#waiting.clear();
    this.#progress.clear();
    this.#streams.clear();
    this.#listener?.end();
    this.#listener = undefined;
    for (const callback of this.#onClose.splice(0)) callback();
  }

  async #read(events: AsyncGenerator<{ event: string; data: string }>): Promise<void> {
    try {
      for await (const event of events) {
        if (event.event === 'message') this.#route(event.data);
      }
      this.close('the MCP server closed its event stream');
    } catch (error) {
      if (!this.#closed) this.#log.warn({ event: 'legacy_sse.stream_error', err: error }, 'the legacy SSE stream of an MCP server failed');
      this.close('the MCP server event stream failed');
    }
  }

  #route(json: string): void {
    let message: RoutedMessage;
    try {
      message = JSON.parse(json) as RoutedMessage;
    } catch {
      this.#log.warn({ event: 'legacy_sse.bad_message' }, 'the MCP server sent an event that is not JSON; dropped');
      return;
    }
    if (message === null || typeof message !== 'object') return;
    const isResponse = message.method === undefined && ('result' in message || 'error' in message);
    if (isResponse) {
      const key = idKey(message.id);
      const exchange = this.#waiting.get(key);
      if (!exchange) {
        this.#log.debug({ event: 'legacy_sse.unclaimed_response' }, 'a response whose request the client no longer waits for; dropped');
        return;
      }
      this.#waiting.delete(key);
      exchange.deliver(json, key);
      return;
    }
    const token = message.method === 'notifications/progress' ? message.params?.progressToken : undefined;
    const owner = token === undefined ? undefined : this.#progress.get(idKey(token));
    if (owner?.streaming) {
      owner.deliver(json);
      return;
    }
    if (this.#listener) {
      this.#listener.write(messageEvent(json));
      return;
    }
    // No GET stream: a POST stream still open may carry it (Streamable HTTP lets the server send
    // requests and notifications on it before the response), else it waits for a GET stream.
    const stream = [...this.#streams].at(-1);
    if (stream) {
      stream.deliver(json);
      return;
    }
    this.#backlog.push(json);
    if (this.#backlog.length > BACKLOG_LIMIT) {
      this.#backlog.shift();
      this.#log.warn({ event: 'legacy_sse.backlog_full' }, 'no client stream for server messages; the oldest was dropped');
    }
  }
}

/** The JSON-RPC id an idKey was made from. */
function idFromKey(key: string): JsonRpcId {
  const colon = key.indexOf(':');
  const type = key.slice(0, colon);
  const value = key.slice(colon + 1);
  return type === 'number' ? Number(value) : type === 'string' ? value : null;
}
