/**
 * A stdio MCP server (`services.<name>.command`) offered to clients as Streamable HTTP: the
 * gateway starts the program and relays JSON-RPC between the client's HTTP session
 * (stdio-session.ts, the SDK's server transport) and the process's stdin/stdout
 * (stdio-host.ts, stdio-process.ts).
 *
 *   POST initialize        starts a session and, by `isolation`, a process or a share of one:
 *                          session  a process per MCP session (the default)
 *                          user     one per user, shared by that user's sessions
 *                          shared   one for everyone
 *                          At `max_processes_per_user`, the user's least recently used
 *                          session that nobody attends (no request pending, no GET stream
 *                          open: its client left without DELETE) makes room; with none,
 *                          or at `max_processes`, 503 with a JSON-RPC error that says which
 *                          limit. Another user's session is never ended to make room.
 *   POST, GET, DELETE      with the session's `Mcp-Session-Id`, served by its transport
 *
 * Sessions and processes live in this gateway process. A session id it does not know (ended,
 * idle, or started on another replica), or one that belongs to another account, gets 404,
 * after which Streamable HTTP clients initialize a new session (MCP basic/transports, session
 * management); one answer for all these cases, so an id reveals nothing about other users.
 *
 * A session ends on DELETE, after `idle_timeout_seconds` without traffic (an open GET stream
 * alone does not keep it), when its process dies, or at shutdown; a client that disconnects
 * keeps its session, as Streamable HTTP clients reconnect. A process of isolation `session`
 * ends with its session; a shared one after `idle_timeout_seconds` without any session.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JsonRpcId } from '../errors/index.ts';
import { sendJsonRpcError } from './http.ts';
import { BodyTooLargeError, readBody } from './request-body.ts';
import { launchSpec, templateValues, type TemplateIdentity } from './stdio-env.ts';
import type { HostLog, StdioHost } from './stdio-host.ts';
import type { ProcessExit } from './stdio-process.ts';
import type { ServiceMetrics } from './service-metrics.ts';
import type { StdioSession } from './stdio-session.ts';
import type { ToolCallWatch } from './tool-calls.ts';

/**
 * The session and process classes, and the MCP SDK under them (~90 ms to load), are loaded
 * with the first `command` service, not by every gateway at start (docs/performance.md).
 */
type StdioRuntime = { StdioHost: typeof StdioHost; StdioSession: typeof StdioSession };
let stdioRuntime: Promise<StdioRuntime> | undefined;
function loadStdioRuntime(): Promise<StdioRuntime> {
  stdioRuntime ??= Promise.all([import('./stdio-host.ts'), import('./stdio-session.ts')])
    .then(([host, session]) => ({ StdioHost: host.StdioHost, StdioSession: session.StdioSession }));
  return stdioRuntime;
}

export interface StdioServiceDefinition {
  command: readonly string[];
  env?: Readonly<Record<string, string>> | undefined;
  cwd?: string | undefined;
  isolation: 'session' | 'user' | 'shared';
  idle_timeout_seconds: number;
  max_processes: number;
  max_processes_per_user: number;
  timeout_ms: number;
  max_body_bytes: number;
}

export interface StdioRequest {
  /** The signed-in user: the owner of the sessions it creates, and the source of `{{user.*}}`. */
  identity: TemplateIdentity;
  /** The user's upstream token, for `{{upstream_token}}`. */
  upstreamToken?: string | undefined;
  /** Headers for every answer (CORS). */
  responseHeaders: Record<string, string>;
  /** The body, when a policy already read it. */
  body?: Buffer | undefined;
  log: HostLog;
  /** Audits the request's tool calls (tool-calls.ts). */
  toolCalls?: ToolCallWatch | undefined;
}

export interface StdioBridge {
  handle(req: IncomingMessage, res: ServerResponse, request: StdioRequest): Promise<void>;
  /** Processes running now (for /ready). */
  readonly processes: number;
  /** Ends every session and stops every process; resolves once all are gone. */
  close(): Promise<void>;
}

export function createStdioBridge(serviceId: string, definition: StdioServiceDefinition, log: HostLog, metrics?: ServiceMetrics): StdioBridge {
  // Loading starts now, so the first request rarely waits for it.
  const loading = loadStdioRuntime();
  loading.catch(() => undefined);
  const idleMs = definition.idle_timeout_seconds * 1000;
  const sessions = new Map<string, StdioSession>();
  /** Sessions whose initialize is under way (no id yet), so shutdown finds them too. */
  const starting = new Set<StdioSession>();
  const hosts = new Set<StdioHost>();
  const exits = new Set<Promise<void>>();
  /** Started and not yet exited: a stopping host has left `hosts` but still runs. */
  let running = 0;
  let closing = false;

  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const session of sessions.values()) if (session.idle(now, idleMs)) session.end('idle');
    for (const host of hosts) {
      if (host.sessions.size === 0 && now - host.lastDetached > idleMs) stopHost(host);
    }
  }, Math.max(250, Math.min(idleMs / 4, 30_000)));
  sweeper.unref();

  function stopHost(host: StdioHost): void {
    hosts.delete(host);
    const done = host.stop().finally(() => exits.delete(done));
    exits.add(done);
  }

  function onExit(host: StdioHost, exit: ProcessExit, expected: boolean): void {
    hosts.delete(host);
    running--;
    metrics?.stdioProcessExited(exit.spawnError ? 'spawn_failed' : expected ? 'stopped' : 'crashed');
    if (!expected) metrics?.upstreamFailed(exit.spawnError ? 'spawn_failed' : 'exited');
    const details = { event: 'stdio.exit', service: serviceId, pid: host.pid, code: exit.code, signal: exit.signal, stderr: exit.stderrTail || undefined };
    if (exit.spawnError) log.error({ ...details, err: exit.spawnError.message }, `the MCP server for ${serviceId} could not be started`);
    else if (expected) log.info(details, 'MCP server process stopped');
    else log.error(details, `the MCP server process for ${serviceId} exited unexpectedly`);
  }

  function startHost(runtime: StdioRuntime, owner: string | undefined, request: StdioRequest): StdioHost {
    const values = templateValues(definition.isolation === 'shared' ? undefined : request.identity, request.upstreamToken);
    const host = new runtime.StdioHost(launchSpec(definition, values), {
      owner, initializeTimeoutMs: definition.timeout_ms, log, onExit,
    });
    hosts.add(host);
    running++;
    metrics?.stdioProcessStarted();
    log.info({ event: 'stdio.start', service: serviceId, pid: host.pid, isolation: definition.isolation, account: owner }, 'MCP server process started');
    return host;
  }

  /** The host a new session of `account` joins, or why none may start. */
  function hostFor(runtime: StdioRuntime, account: string, request: StdioRequest): StdioHost | { refused: string } {
    const owner = definition.isolation === 'shared' ? undefined : account;
    if (definition.isolation !== 'session') {
      for (const host of hosts) if (!host.closed && host.owner === owner) return host;
    }
    if (hosts.size >= definition.max_processes) {
      return { refused: `${serviceId} is running its maximum of ${definition.max_processes} server processes; try again later` };
    }
    let own = [...hosts].filter((host) => owner !== undefined && host.owner === owner).length;
    if (owner !== undefined && own >= definition.max_processes_per_user && definition.isolation === 'session') {
      const abandoned = [...sessions.values()]
        .filter((session) => session.owner === owner && session.unattended)
        .sort((a, b) => a.lastActivity - b.lastActivity)[0];
      if (abandoned) {
        log.info({ event: 'stdio.session_replaced', service: serviceId, account }, 'a new session replaces the user\'s least recently used unattended one');
        abandoned.end('replaced by a new session of the same user');
        own--;
      }
    }
    if (owner !== undefined && own >= definition.max_processes_per_user) {
      return { refused: `you already have ${own} sessions of ${serviceId} in use, its limit per user; end one and try again` };
    }
    return startHost(runtime, owner, request);
  }

  const closeSession = (session: StdioSession) => {
    starting.delete(session);
    if (session.id !== undefined && sessions.get(session.id) === session) sessions.delete(session.id);
    const host = session.host;
    host.detach(session);
    if (definition.isolation === 'session' || closing) {
      if (hosts.has(host)) stopHost(host);
    }
  };

  async function handle(req: IncomingMessage, res: ServerResponse, request: StdioRequest): Promise<void> {
    for (const [name, value] of Object.entries(request.responseHeaders)) res.setHeader(name, value);
    const account = request.identity.accountId;
    let parsed: unknown;
    if (req.method === 'POST') {
      let body: Buffer;
      try {
        body = request.body ?? await readBody(req, definition.max_body_bytes);
      } catch (error) {
        if (error instanceof BodyTooLargeError) return sendJsonRpcError(res, 413, 'payload_too_large', 'the request body is too large', null, { connection: 'close' });
        throw error;
      }
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        return sendJsonRpcError(res, 400, 'parse_error', 'the request body is not valid JSON');
      }
    }
    const id = requestId(parsed);

    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId === 'string' && sessionId !== '') {
      const session = sessions.get(sessionId);
      if (!session || session.owner !== account) {
        if (session) request.log.warn({ event: 'session.foreign', service: serviceId, account }, 'a session id of another account was presented');
        return sendJsonRpcError(res, 404, 'not_found',
          'session not found: it ended, timed out, or was started on another gateway replica; initialize a new session', id);
      }
      return session.handle(req, res, parsed, request.toolCalls);
    }

    if (req.method !== 'POST' || !isInitialize(parsed)) {
      // Streamable HTTP, session management: a request without a required session id gets 400.
      return sendJsonRpcError(res, 400, 'invalid_request', 'this server needs a session: send initialize first, then the Mcp-Session-Id it returns', id);
    }
    const runtime = await loading;
    if (closing) return sendJsonRpcError(res, 503, 'service_unavailable', 'the gateway is shutting down', id);
    const host = hostFor(runtime, account, request);
    if ('refused' in host) {
      request.log.warn({ event: 'stdio.limit', service: serviceId, account, reason: host.refused }, 'a new MCP session was refused by a process limit');
      return sendJsonRpcError(res, 503, 'service_unavailable', host.refused, id);
    }
    const session: StdioSession = new runtime.StdioSession({
      owner: account,
      host,
      maxBodyBytes: definition.max_body_bytes,
      log,
      onInitialized: (created) => {
        starting.delete(created);
        if (created.id !== undefined) sessions.set(created.id, created);
      },
      onClosed: closeSession,
    });
    starting.add(session);
    await session.handle(req, res, parsed, request.toolCalls);
    // The transport refused the initialize (a wrong Accept header, a batch): no session came of it.
    if (session.id === undefined) session.end('not initialized');
  }

  return {
    handle,
    get processes() {
      return running;
    },
    async close() {
      closing = true;
      clearInterval(sweeper);
      for (const session of [...sessions.values(), ...starting]) session.end('shutdown');
      for (const host of [...hosts]) stopHost(host);
      await Promise.all([...exits]);
    },
  };
}

function isInitialize(body: unknown): boolean {
  const messages = Array.isArray(body) ? body : [body];
  return messages.some((message) => typeof message === 'object' && message !== null && (message as { method?: unknown }).method === 'initialize');
}

function requestId(body: unknown): JsonRpcId {
  const id = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as { id?: unknown }).id : undefined;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}
