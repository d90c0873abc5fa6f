/**
 * One spawned stdio MCP server and the client sessions it serves: one session (isolation
 * `session`), or several (`user`: one user's sessions; `shared`: everyone's). A stdio server
 * knows a single peer, so the host makes several sessions look like one:
 *
 *   client request        gets an id of the host's own (ids of different sessions may collide),
 *                         and so does its `progressToken`; the response and progress travel
 *                         back under the client's own id and token
 *   initialize            goes to the server once; later sessions get the same result, and
 *                         their `notifications/initialized` is not repeated
 *   cancellation          `notifications/cancelled` names the host's id for the request
 *   server request        (sampling, elicitation, roots) goes to the session whose request is
 *                         the most recent one still pending (it is almost surely what the
 *                         server is working on); with none pending, to the most recently active
 *                         session; only that session's answer is passed back
 *   server notification   progress to its request's session; list changes and resource updates
 *                         to every session; anything else (logging) like a server request when
 *                         a request is pending, else to every session of a single-user host
 *
 * MCP basic/lifecycle: the server sees one initialize and one `initialized`; a client that joins
 * later gets the server's answer to the first client, capabilities included. Messages are
 * otherwise passed unchanged: the gateway never rewrites a protocol version.
 */
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js';
import { JSONRPC_ERRORS } from '../errors/index.ts';
import type { LaunchSpec } from './stdio-env.ts';
import { StdioProcess, type ProcessExit } from './stdio-process.ts';

/** What the host needs of a client session (stdio-session.ts). */
export interface HostSession {
  /** The account whose session it is. */
  readonly owner: string;
  readonly lastActivity: number;
  /** A message for the client; `relatedRequestId` names the client request it belongs to. */
  deliver(message: JSONRPCMessage, relatedRequestId?: RequestId): void;
  /** Ends the session (its process died); the client must initialize a new one. */
  end(reason: string): void;
}

export interface HostLog {
  debug(details: Record<string, unknown>, message: string): void;
  info(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
  error(details: Record<string, unknown>, message: string): void;
}

export interface HostOptions {
  /** The account every session belongs to (isolation session and user); absent for shared. */
  owner?: string | undefined;
  /** How long the server may take to answer initialize. */
  initializeTimeoutMs: number;
  log: HostLog;
  /** Called once the process is gone, whatever the reason; `expected` when the host stopped it. */
  onExit(host: StdioHost, exit: ProcessExit, expected: boolean): void;
}

interface PendingRequest {
  session: HostSession;
  originalId: RequestId;
  originalToken?: string | number | undefined;
  initialize?: boolean | undefined;
  timer?: NodeJS.Timeout | undefined;
}

type Message = JSONRPCMessage & {
  id?: RequestId;
  method?: string;
  params?: Record<string, unknown> & { _meta?: Record<string, unknown> };
  result?: unknown;
  error?: unknown;
};

/** A map key for a JSON-RPC id that keeps 1 and "1" apart. */
function idKey(id: unknown): string {
  return `${typeof id}:${String(id)}`;
}

const BROADCAST = /^notifications\/(tools|prompts|resources)\/list_changed$|^notifications\/resources\/updated$/;

export class StdioHost {
  readonly owner: string | undefined;
  readonly sessions = new Set<HostSession>();
  /** When the last session left (for the idle timeout of a host without sessions). */
  lastDetached = Date.now();
  #process: StdioProcess;
  #options: HostOptions;
  #nextId = 0;
  #pending = new Map<number, PendingRequest>();
  /** The server's requests to clients, by idKey: the session asked, and the server's id. */
  #serverRequests = new Map<string, { session: HostSession; id: RequestId }>();
  #initialized: Message | undefined;
  #initializeWaiters: Array<{ session: HostSession; message: Message }> | undefined;
  #initializedSent = false;
  #stopping = false;
  #junkLogged = false;

  constructor(spec: LaunchSpec, options: HostOptions) {
    this.owner = options.owner;
    this.#options = options;
    this.#process = new StdioProcess(spec, {
      message: (message) => this.#fromServer(message as Message),
      junk: (error) => {
        if (this.#junkLogged) return;
        this.#junkLogged = true;
        options.log.warn({ event: 'stdio.stdout_noise', pid: this.pid, err: error.message }, 'the MCP server wrote something other than JSON-RPC to stdout (it belongs on stderr); such lines are skipped');
      },
      exit: (exit) => this.#exited(exit),
    });
  }

  get pid(): number | undefined {
    return this.#process.pid;
  }

  get closed(): boolean {
    return this.#stopping || this.#process.exited;
  }

  attach(session: HostSession): void {
    this.sessions.add(session);
  }

  /** The session is gone: its requests are cancelled and the server's questions to it refused. */
  detach(session: HostSession): void {
    if (!this.sessions.delete(session)) return;
    this.lastDetached = Date.now();
    for (const [id, pending] of this.#pending) {
      if (pending.session !== session) continue;
      clearTimeout(pending.timer);
      this.#pending.delete(id);
      this.#process.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason: 'the client session ended' } });
    }
    for (const [key, asked] of this.#serverRequests) {
      if (asked.session !== session) continue;
      this.#serverRequests.delete(key);
      this.#process.send(jsonRpcErrorMessage(asked.id, JSONRPC_ERRORS.internal_error, 'the client session ended before answering'));
    }
    this.#initializeWaiters = this.#initializeWaiters?.filter((waiter) => waiter.session !== session);
  }

  /** Stops the process (and its process group); resolves once it is gone. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#process.stop();
  }

  /** A message from a client session. */
  fromClient(session: HostSession, message: Message): void {
    if (message.method !== undefined && message.id !== undefined) this.#clientRequest(session, message);
    else if (message.method !== undefined) this.#clientNotification(session, message);
    else this.#clientResponse(session, message);
  }

  #clientRequest(session: HostSession, message: Message): void {
    if (message.method === 'initialize') {
      if (this.#initialized) {
        session.deliver({ ...this.#initialized, id: message.id } as JSONRPCMessage);
        return;
      }
      if (this.#initializeWaiters) {
        this.#initializeWaiters.push({ session, message });
        return;
      }
      this.#initializeWaiters = [];
    }
    const id = ++this.#nextId;
    const pending: PendingRequest = { session, originalId: message.id as RequestId };
    let params = message.params;
    const token = params?._meta?.progressToken;
    if (typeof token === 'string' || typeof token === 'number') {
      pending.originalToken = token;
      params = { ...params, _meta: { ...params?._meta, progressToken: id } };
    }
    if (message.method === 'initialize') {
      pending.initialize = true;
      pending.timer = setTimeout(() => this.#initializeTimedOut(id), this.#options.initializeTimeoutMs);
      pending.timer.unref();
    }
    this.#pending.set(id, pending);
    this.#process.send({ ...message, id, ...(params !== undefined ? { params } : {}) } as JSONRPCMessage);
  }

  #clientNotification(session: HostSession, message: Message): void {
    if (message.method === 'notifications/initialized') {
      if (this.#initializedSent) return;
      this.#initializedSent = true;
    } else if (message.method === 'notifications/cancelled') {
      const requestId = message.params?.requestId;
      const found = [...this.#pending].find(([, pending]) => pending.session === session && pending.originalId === requestId);
      if (!found) return;
      // MCP utilities/cancellation: the sender ignores any response that still arrives.
      clearTimeout(found[1].timer);
      this.#pending.delete(found[0]);
      this.#process.send({ ...message, params: { ...message.params, requestId: found[0] } } as JSONRPCMessage);
      return;
    }
    this.#process.send(message);
  }

  #clientResponse(session: HostSession, message: Message): void {
    const key = idKey(message.id);
    if (this.#serverRequests.get(key)?.session !== session) {
      this.#options.log.warn({ event: 'stdio.unexpected_response', pid: this.pid }, 'a client answered a server request that was not sent to its session; dropped');
      return;
    }
    this.#serverRequests.delete(key);
    this.#process.send(message);
  }

  #fromServer(message: Message): void {
    if (message.method === undefined) this.#serverResponse(message);
    else if (message.id !== undefined) this.#serverRequest(message);
    else this.#serverNotification(message);
  }

  #serverResponse(message: Message): void {
    const pending = typeof message.id === 'number' ? this.#pending.get(message.id) : undefined;
    if (!pending) return; // cancelled, timed out, or its session ended
    clearTimeout(pending.timer);
    this.#pending.delete(message.id as number);
    const answer = { ...message, id: pending.originalId } as JSONRPCMessage;
    pending.session.deliver(answer);
    if (pending.initialize) this.#initializeAnswered(message);
  }

  #initializeAnswered(message: Message): void {
    const waiters = this.#initializeWaiters ?? [];
    this.#initializeWaiters = undefined;
    // A refused initialize is not kept: the next session's own initialize goes to the server.
    if (message.result !== undefined) this.#initialized = { jsonrpc: '2.0', result: message.result } as Message;
    for (const waiter of waiters) {
      if (message.result !== undefined) waiter.session.deliver({ jsonrpc: '2.0', id: waiter.message.id, result: message.result } as JSONRPCMessage);
      else this.fromClient(waiter.session, waiter.message);
    }
  }

  #initializeTimedOut(id: number): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#options.log.error({ event: 'stdio.initialize_timeout', pid: this.pid, timeout_ms: this.#options.initializeTimeoutMs }, 'the MCP server did not answer initialize in time; stopping it');
    this.#pending.delete(id);
    pending.session.deliver(jsonRpcErrorMessage(pending.originalId, JSONRPC_ERRORS.upstream_timeout, 'the MCP server did not start in time'));
    for (const waiter of this.#initializeWaiters ?? []) {
      waiter.session.deliver(jsonRpcErrorMessage(waiter.message.id as RequestId, JSONRPC_ERRORS.upstream_timeout, 'the MCP server did not start in time'));
    }
    this.#initializeWaiters = undefined;
    void this.stop();
  }

  #serverRequest(message: Message): void {
    const target = this.#target();
    if (!target) {
      this.#process.send(jsonRpcErrorMessage(message.id as RequestId, JSONRPC_ERRORS.internal_error, 'no client session is connected to answer'));
      return;
    }
    this.#serverRequests.set(idKey(message.id), { session: target.session, id: message.id as RequestId });
    target.session.deliver(message, target.related);
  }

  #serverNotification(message: Message): void {
    const method = message.method as string;
    if (method === 'notifications/progress') {
      const token = message.params?.progressToken;
      const pending = typeof token === 'number' ? this.#pending.get(token) : undefined;
      if (!pending || pending.originalToken === undefined) return;
      pending.session.deliver({ ...message, params: { ...message.params, progressToken: pending.originalToken } } as JSONRPCMessage, pending.originalId);
      return;
    }
    if (method === 'notifications/cancelled') {
      // The server withdraws a request it sent to a client.
      const asked = this.#serverRequests.get(idKey(message.params?.requestId));
      if (asked) {
        this.#serverRequests.delete(idKey(message.params?.requestId));
        asked.session.deliver(message);
      }
      return;
    }
    if (BROADCAST.test(method)) {
      for (const session of this.sessions) session.deliver(message);
      return;
    }
    const pending = this.#latestPending();
    if (pending) {
      pending.session.deliver(message, pending.originalId);
    } else if (this.owner !== undefined) {
      // Every session here is the one user's: each may see what the server says.
      for (const session of this.sessions) session.deliver(message);
    } else {
      this.#options.log.debug({ event: 'stdio.notification_dropped', method }, 'a notification of a shared server with no request pending had no session to go to');
    }
  }

  /** Where a server request goes: the session of the latest pending request, else the latest active one. */
  #target(): { session: HostSession; related?: RequestId | undefined } | undefined {
    const pending = this.#latestPending();
    if (pending) return { session: pending.session, related: pending.originalId };
    let latest: HostSession | undefined;
    for (const session of this.sessions) if (!latest || session.lastActivity > latest.lastActivity) latest = session;
    return latest ? { session: latest } : undefined;
  }

  #latestPending(): PendingRequest | undefined {
    let latest: PendingRequest | undefined;
    for (const pending of this.#pending.values()) latest = pending;
    return latest;
  }

  #exited(exit: ProcessExit): void {
    const expected = this.#stopping;
    const message = expected ? 'the MCP server was stopped before it answered' : 'the MCP server stopped unexpectedly before it answered';
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.session.deliver(jsonRpcErrorMessage(pending.originalId, JSONRPC_ERRORS.upstream_unavailable, message));
    }
    for (const waiter of this.#initializeWaiters ?? []) {
      waiter.session.deliver(jsonRpcErrorMessage(waiter.message.id as RequestId, JSONRPC_ERRORS.upstream_unavailable, message));
    }
    this.#pending.clear();
    this.#serverRequests.clear();
    this.#initializeWaiters = undefined;
    this.#options.onExit(this, exit, expected);
    for (const session of [...this.sessions]) session.end(expected ? 'stopped' : 'the MCP server process exited');
  }
}

function jsonRpcErrorMessage(id: RequestId, code: number, message: string): JSONRPCMessage {
  return { jsonrpc: '2.0', id, error: { code, message } } as JSONRPCMessage;
}
