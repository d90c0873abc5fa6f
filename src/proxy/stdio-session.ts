/**
 * One client's MCP session with a spawned stdio server: the SDK's Streamable HTTP server
 * transport faces the client (session id, POST with JSON-RPC in and an event stream out, the
 * GET stream, DELETE), and its messages go to and come from the process host (stdio-host.ts).
 *
 * Where a message for the client goes (MCP basic/transports, "Sending Messages to the Server"
 * and "Listening for Messages from the Server"):
 *   a response                                 the stream of the POST that carried its request
 *   related to a pending request               that POST's stream, so it arrives while the
 *                                              client waits (sampling in the middle of a tool call)
 *   anything else                              the GET stream; while none is open, kept (bounded)
 *                                              and sent when the client opens one
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { HostLog, HostSession, StdioHost } from './stdio-host.ts';
import { callKey, scannedOf, toolCallsOf, ToolCallLedger, type ToolCall, type ToolCallWatch } from './tool-calls.ts';

/** Messages kept for a GET stream that is not open yet; beyond, the oldest are dropped. */
const BACKLOG_LIMIT = 100;

type Message = JSONRPCMessage & { id?: RequestId; method?: string; params?: { requestId?: RequestId } };

export interface SessionOptions {
  owner: string;
  host: StdioHost;
  maxBodyBytes: number;
  log: HostLog;
  /** The transport issued the session id (the initialize request was accepted). */
  onInitialized(session: StdioSession): void;
  /** The session ended: DELETE, idle, its process gone, or shutdown. */
  onClosed(session: StdioSession): void;
}

export class StdioSession implements HostSession {
  readonly owner: string;
  readonly host: StdioHost;
  lastActivity = Date.now();
  #transport: StreamableHTTPServerTransport;
  #log: HostLog;
  /** The client's requests still waiting for an answer, oldest first. */
  #inflight = new Map<string, RequestId>();
  #getStream: ServerResponse | undefined;
  #backlog: JSONRPCMessage[] = [];
  #closed = false;
  #ending = false;
  /** Tool calls of requests being handled, until the transport passes them on (then in #toolCalls). */
  #announced = new Map<string, { call: ToolCall; watch: ToolCallWatch }>();
  #toolCalls: ToolCallLedger | undefined;

  constructor(options: SessionOptions) {
    this.owner = options.owner;
    this.host = options.host;
    this.#log = options.log;
    // 192 random bits: an id that cannot be guessed (MCP basic/security_best_practices, session hijacking).
    this.#transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomBytes(24).toString('base64url'),
      onsessioninitialized: () => options.onInitialized(this),
      maxRequestBodySize: options.maxBodyBytes,
    });
    this.#transport.onmessage = (message) => this.#fromClient(message as Message);
    this.#transport.onerror = (error) => this.#log.debug({ event: 'stdio.transport_error', err: error.message }, 'the session transport refused a request');
    this.#transport.onclose = () => {
      if (this.#closed) return;
      this.#closed = true;
      this.#backlog = [];
      // Closed by the transport itself: the client ended the session (DELETE) with calls pending.
      this.#toolCalls?.close({ outcome: this.#ending ? 'upstream_error' : 'cancelled' });
      options.onClosed(this);
    };
    void this.#transport.start();
    this.host.attach(this);
  }

  get id(): string | undefined {
    return this.#transport.sessionId;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** No request pending and no GET stream open: a client that went away without DELETE looks like this. */
  get unattended(): boolean {
    return this.#inflight.size === 0 && this.#getStream === undefined;
  }

  /** No request pending and nothing exchanged for `idleMs`; an open GET stream alone does not count. */
  idle(now: number, idleMs: number): boolean {
    return this.#inflight.size === 0 && now - this.lastActivity > idleMs;
  }

  /** Serves one HTTP request of this session; `parsedBody` for a POST whose body was read already. */
  async handle(req: IncomingMessage, res: ServerResponse, parsedBody: unknown, toolCalls?: ToolCallWatch): Promise<void> {
    this.lastActivity = Date.now();
    if (req.method === 'GET') this.#watchGetStream(res);
    const calls = toolCalls && req.method === 'POST' ? toolCallsOf(parsedBody) : [];
    if (toolCalls && calls.length > 0) this.#announce(calls, toolCalls, res);
    await this.#transport.handleRequest(req, res, parsedBody);
    // Calls the transport never passed on: it refused the request with a JSON-RPC error.
    for (const call of calls) {
      const announced = this.#announced.get(callKey(call.id));
      if (!announced || announced.call !== call) continue;
      this.#announced.delete(callKey(call.id));
      announced.watch.audit.record(call, announced.watch.context, { outcome: 'rpc_error', status: res.statusCode });
    }
  }

  /** Tool calls of a request, recorded once the transport passes them on and the process answers. */
  #announce(calls: ToolCall[], watch: ToolCallWatch, res: ServerResponse): void {
    for (const call of calls) this.#announced.set(callKey(call.id), { call, watch });
    this.#toolCalls ??= new ToolCallLedger(watch.audit);
    const ledger = this.#toolCalls;
    // A client that leaves before the answer cancelled its calls, as far as it is concerned.
    res.once('close', () => {
      if (res.writableFinished) return;
      for (const call of calls) if (ledger.has(call.id)) ledger.end(call.id, { outcome: 'cancelled' });
    });
  }

  deliver(message: JSONRPCMessage, relatedRequestId?: RequestId): void {
    if (this.#closed) return;
    this.lastActivity = Date.now();
    const routed = message as Message;
    if (routed.method === undefined) {
      this.#inflight.delete(idKey(routed.id));
      if (this.#toolCalls?.size) this.#toolCalls.answer(scannedOf(message));
      this.#send(message);
    } else if (relatedRequestId !== undefined && this.#inflight.has(idKey(relatedRequestId))) {
      this.#send(message, relatedRequestId);
    } else if (this.#getStream) {
      this.#send(message);
    } else {
      this.#backlog.push(message);
      if (this.#backlog.length > BACKLOG_LIMIT) this.#backlog.shift();
    }
  }

  end(reason: string): void {
    if (this.#closed) return;
    this.#ending = true;
    this.#log.debug({ event: 'stdio.session_end', reason }, 'MCP session ended');
    void this.#transport.close();
  }

  #fromClient(message: Message): void {
    this.lastActivity = Date.now();
    if (message.method !== undefined && message.id !== undefined) this.#inflight.set(idKey(message.id), message.id);
    if (message.method === 'notifications/cancelled') {
      this.#inflight.delete(idKey(message.params?.requestId));
      this.#toolCalls?.end(message.params?.requestId, { outcome: 'cancelled' });
    }
    if (message.method === 'tools/call' && message.id !== undefined) {
      const announced = this.#announced.get(callKey(message.id));
      this.#announced.delete(callKey(message.id));
      if (announced) this.#toolCalls?.open(announced.call, announced.watch.context);
    }
    this.host.fromClient(this, message);
  }

  #send(message: JSONRPCMessage, relatedRequestId?: RequestId): void {
    // Without an event store the transport writes synchronously, so messages keep their order.
    this.#transport.send(message, relatedRequestId !== undefined ? { relatedRequestId } : undefined).catch((error: Error) => {
      // The stream it belonged to is gone (the client disconnected): nothing left to send it on.
      this.#log.debug({ event: 'stdio.undeliverable', err: error.message }, 'a message for the client had no open stream');
    });
  }

  /**
   * The transport opens the session's GET stream without telling: see its answer go out, then
   * send what was kept for it. The stream counts as open until its connection closes.
   */
  #watchGetStream(res: ServerResponse): void {
    const writeHead = res.writeHead;
    res.writeHead = ((...args: Parameters<ServerResponse['writeHead']>) => {
      res.writeHead = writeHead;
      const result = writeHead.apply(res, args);
      if (res.statusCode === 200 && !this.#closed) {
        this.#getStream = res;
        res.once('close', () => {
          if (this.#getStream === res) this.#getStream = undefined;
        });
        const backlog = this.#backlog;
        this.#backlog = [];
        for (const message of backlog) this.#send(message);
      }
      return result;
    }) as ServerResponse['writeHead'];
  }
}

function idKey(id: unknown): string {
  return `${typeof id}:${String(id)}`;
}
