/**
 * The audit trail of MCP tool calls (`tool.called`, ops/audit.ts): one line per `tools/call`
 * request a client sends through the gateway, on every transport, with who (account, client),
 * where (service), which tool, how it ended, and how long it took:
 *
 *   ok              a result                                   (MCP tools: CallToolResult)
 *   tool_error      a result with `isError: true`              (the tool ran and reported failure)
 *   rpc_error       a JSON-RPC error from the server, `error_code` its code (unknown tool, bad params)
 *   upstream_error  no answer from the server: unreachable, timed out, refused by the circuit,
 *                   its stream or process ended first, or a JSON-RPC error with one of the
 *                   gateway's own codes (-32010 to -32012), which the gateway sends for these
 *   cancelled       the client went away, or cancelled the request, before the answer
 *
 * Arguments are written only for services that opt in (`audit.tool_arguments`), redacted
 * (tool-call-arguments.ts). The session id is a bearer of sorts, so only a short hash of it is
 * written, enough to tell the calls of one session from another's.
 *
 * Only requests whose body holds `tools/call` cost more than a byte search: see toolCallsInBody.
 */
import { createHash } from 'node:crypto';
import type { AuditLog } from '../ops/audit.ts';
import { scanMessages, type ScannedMessage } from './json-rpc-scan.ts';
import { auditedArguments, compileArgumentRules, type CompiledRules } from './tool-call-arguments.ts';

export type ToolCallOutcome = 'ok' | 'tool_error' | 'rpc_error' | 'upstream_error' | 'cancelled' | 'denied';

/** `services.<name>.audit` (config/schema/service-audit.ts). */
export interface ServiceAuditSettings {
  tool_arguments: boolean;
  redact: readonly string[];
  max_argument_bytes: number;
}

/** Who made a call, and when the gateway began forwarding it. */
export interface CallContext {
  requestId: string;
  account: string;
  email?: string | undefined;
  /** The OAuth client of the access token. */
  client: string;
  /** The request's `Mcp-Session-Id`; only a hash of it is written. */
  session?: string | undefined;
  /** `performance.now()` when forwarding began. */
  startedAt: number;
}

/** What a transport needs to audit the tool calls of one request. */
export interface ToolCallWatch {
  audit: ToolCallAudit;
  context: CallContext;
}

/** The context of the calls of one request: `authorized` is what the bearer check found (authorize-request.ts). */
export function callContext(
  requestId: string,
  authorized: { account: { accountId: string; email?: string | undefined }; claims: { client_id: string } },
  session: string | string[] | undefined,
): CallContext {
  return {
    requestId,
    account: authorized.account.accountId,
    email: authorized.account.email,
    client: authorized.claims.client_id,
    session: typeof session === 'string' && session !== '' ? session : undefined,
    startedAt: performance.now(),
  };
}

export type CallId = string | number;

export interface ToolCall {
  /** Undefined when not read: the body was cut short before it (its answer is then matched otherwise). */
  id: CallId | undefined;
  name: string | undefined;
  /** The arguments, when the whole message was read. */
  arguments?: unknown;
}

/** How a call ended. */
export interface Ending {
  outcome: ToolCallOutcome;
  /** `error.code` of a JSON-RPC error answer. */
  errorCode?: number | undefined;
  /** The HTTP status the client got, on HTTP transports. */
  status?: number | undefined;
}

/** JSON-RPC codes the gateway answers with for a server it could not get an answer from (errors/index.ts). */
const GATEWAY_UPSTREAM_CODES = new Set([-32010, -32011, -32012]);
/** MCP tools, naming: tool names are at most 128 characters; ids are the client's choice. */
const MAX_FIELD_CHARS = 128;
const TOOLS_CALL = Buffer.from('"tools/call"');
/** Calls one exchange or connection may have waiting for answers; beyond it the oldest is given up. */
const MAX_PENDING_CALLS = 1000;

/** One service's tool-call audit: where lines go, and how arguments are treated. */
export class ToolCallAudit {
  readonly service: string;
  readonly transport: string;
  #audit: Pick<AuditLog, 'record'>;
  #rules: CompiledRules | undefined;

  constructor(audit: Pick<AuditLog, 'record'>, service: string, transport: string, settings?: ServiceAuditSettings) {
    this.#audit = audit;
    this.service = service;
    this.transport = transport;
    this.#rules = settings?.tool_arguments
      ? compileArgumentRules({ redact: settings.redact, maxBytes: settings.max_argument_bytes })
      : undefined;
  }

  /** Whether the lines show arguments (`audit.tool_arguments`): otherwise calls need not keep them. */
  get keepsArguments(): boolean {
    return this.#rules !== undefined;
  }

  /** Writes a `denied` line for each tool call in `body`, which the gateway refused (`status`) before forwarding. */
  refused(body: Buffer, context: CallContext, status: number): void {
    const found = toolCallsInBody(body, true);
    if (!found) return;
    for (const call of found.calls) this.record(call, context, { outcome: 'denied', status });
  }

  /** Writes the `tool.called` line of one finished call. */
  record(call: ToolCall, context: CallContext, ending: Ending): void {
    const fields: Record<string, unknown> = {
      request_id: context.requestId,
      account: context.account,
      email: context.email,
      client: context.client,
      service: this.service,
      transport: this.transport,
      session: context.session === undefined ? undefined : sessionHash(context.session),
      tool: clip(call.name),
      rpc_id: typeof call.id === 'string' ? clip(call.id) : call.id,
      outcome: ending.outcome,
      error_code: ending.errorCode,
      status: ending.status,
      duration_ms: Math.round((performance.now() - context.startedAt) * 10) / 10,
    };
    if (this.#rules) {
      Object.assign(fields, 'arguments' in call ? auditedArguments(call.arguments, this.#rules) : { arguments_omitted: 'not read: the request body is over 64 KiB' });
    }
    this.#audit.record('tool.called', fields);
  }
}

function clip(text: string | undefined): string | undefined {
  return text !== undefined && text.length > MAX_FIELD_CHARS ? `${text.slice(0, MAX_FIELD_CHARS)}…` : text;
}

function sessionHash(session: string): string {
  return createHash('sha256').update(session).digest('hex').slice(0, 16);
}

/** A map key for a JSON-RPC id that keeps 1 and "1" apart. */
export function callKey(id: unknown): string {
  return `${typeof id}:${String(id)}`;
}

/** The `tools/call` requests of a parsed message or batch. */
export function toolCallsOf(body: unknown): ToolCall[] {
  const calls: ToolCall[] = [];
  for (const message of Array.isArray(body) ? body : [body]) {
    if (typeof message !== 'object' || message === null || (message as { method?: unknown }).method !== 'tools/call') continue;
    const { id, params } = message as { id?: unknown; params?: { name?: unknown; arguments?: unknown } };
    if (typeof id !== 'string' && typeof id !== 'number') continue; // a notification is no call
    const name = typeof params?.name === 'string' ? params.name : undefined;
    calls.push({ id, name, arguments: params?.arguments });
  }
  return calls;
}

/** The calls of a parsed body waiting for their answers; undefined when it has none. */
export function openToolCalls(watch: ToolCallWatch | undefined, body: unknown): ToolCallLedger | undefined {
  if (!watch) return undefined;
  const calls = toolCallsOf(body);
  if (calls.length === 0) return undefined;
  const ledger = new ToolCallLedger(watch.audit);
  for (const call of calls) ledger.open(call, watch.context);
  return ledger;
}

/** How the calls still waiting when the client's response closed ended: the gateway answered for them, or the client left. */
export function endingAtClose(res: { writableFinished: boolean; statusCode: number }): Ending {
  if (!res.writableFinished) return { outcome: 'cancelled' };
  return { outcome: res.statusCode >= 500 ? 'upstream_error' : 'rpc_error', status: res.statusCode };
}

/** The answer in one JSON-RPC message's text. */
export function scannedText(json: string): ScannedMessage | undefined {
  return scanMessages(Buffer.from(json)).messages[0];
}

/** The calls of a body, and the ids of all its requests (calls or not). */
export interface BodyCalls {
  calls: ToolCall[];
  ids: Set<string>;
}

/**
 * The `tools/call` requests in a request body, or undefined when it has none. `text` is the
 * body, or its beginning when `whole` is false; then the calls are read as far as it goes
 * (their arguments not at all). A body without the text `"tools/call"` costs one byte search.
 */
export function toolCallsInBody(text: Buffer, whole: boolean): BodyCalls | undefined {
  if (text.indexOf(TOOLS_CALL) === -1) return undefined;
  if (whole) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text.toString('utf8'));
    } catch {
      return undefined; // not JSON: the server answers a parse error, and no tool was called
    }
    const calls = toolCallsOf(parsed);
    if (calls.length === 0) return undefined;
    const ids = new Set<string>();
    for (const message of Array.isArray(parsed) ? parsed : [parsed]) {
      const id = (message as { id?: unknown } | null)?.id;
      if (typeof id === 'string' || typeof id === 'number') ids.add(callKey(id));
    }
    return { calls, ids };
  }
  const { messages, partial } = scanMessages(text);
  const ids = new Set<string>();
  const calls: ToolCall[] = [];
  for (const message of partial ? [...messages, partial] : messages) {
    const id = typeof message.id === 'string' || typeof message.id === 'number' ? message.id : undefined;
    if (id !== undefined) ids.add(callKey(id));
    // A request cut short may still be a call whose id comes later; a whole message without one is a notification.
    if (message.method === 'tools/call' && (id !== undefined || message === partial)) calls.push({ id, name: message.name });
  }
  return calls.length > 0 ? { calls, ids } : undefined;
}

/** A parsed message as the scanner would have seen it. */
export function scannedOf(message: unknown): ScannedMessage {
  const m = (typeof message === 'object' && message !== null ? message : {}) as {
    id?: unknown; method?: unknown; result?: { isError?: unknown }; error?: { code?: unknown };
  };
  return {
    id: typeof m.id === 'string' || typeof m.id === 'number' || m.id === null ? m.id : undefined,
    method: typeof m.method === 'string' ? m.method : undefined,
    result: 'result' in m,
    error: 'error' in m,
    isError: m.result?.isError === true,
    errorCode: typeof m.error?.code === 'number' ? m.error.code : undefined,
  };
}

/** How an answer ends its call. */
export function endingOf(answer: ScannedMessage, status?: number): Ending {
  if (answer.error) {
    const gateway = answer.errorCode !== undefined && GATEWAY_UPSTREAM_CODES.has(answer.errorCode);
    return { outcome: gateway ? 'upstream_error' : 'rpc_error', errorCode: answer.errorCode, status };
  }
  return { outcome: answer.isError ? 'tool_error' : 'ok', status };
}

/**
 * The calls waiting for their answers: of one HTTP exchange, one stdio or legacy SSE session,
 * or one WebSocket connection. Each call is recorded once, when its answer comes or when it is
 * given up (`close`).
 */
export class ToolCallLedger {
  readonly audit: ToolCallAudit;
  #pending = new Map<string, { call: ToolCall; context: CallContext }>();
  /** Ids of every request of the exchange: an answer to none of them answers a call whose id was not read. */
  #ids: Set<string> | undefined;

  constructor(audit: ToolCallAudit, ids?: Set<string>) {
    this.audit = audit;
    this.#ids = ids;
  }

  get size(): number {
    return this.#pending.size;
  }

  open(call: ToolCall, context: CallContext): void {
    const key = call.id === undefined ? '?' : callKey(call.id);
    // An id still waiting for its answer, used again (JSON-RPC and MCP forbid it): the two answers
    // cannot be told apart, so the earlier call ends here, as refused.
    this.end(key === '?' ? undefined : call.id, { outcome: 'rpc_error' });
    // A connection that keeps sending calls nobody answers must not grow without bound.
    if (this.#pending.size >= MAX_PENDING_CALLS) {
      const [oldest] = this.#pending.keys();
      if (oldest !== undefined) this.#endKey(oldest, { outcome: 'upstream_error' });
    }
    const kept = this.audit.keepsArguments ? call : { id: call.id, name: call.name };
    this.#pending.set(key, { call: kept, context });
  }

  has(id: unknown): boolean {
    return this.#pending.has(callKey(id));
  }

  /** A message from the server: records the call it answers, if any; true when it did. */
  answer(message: ScannedMessage, status?: number): boolean {
    if (message.method !== undefined || (!message.result && !message.error)) return false;
    let key = callKey(message.id);
    if (!this.#pending.has(key) && this.#pending.has('?') && !this.#ids?.has(key)) key = '?';
    const entry = this.#pending.get(key);
    if (!entry) return false;
    this.#pending.delete(key);
    this.audit.record(entry.call, entry.context, endingOf(message, status));
    return true;
  }

  /** Ends one call without an answer (`notifications/cancelled`). */
  end(id: unknown, ending: Ending): void {
    if (id !== undefined) this.#endKey(callKey(id), ending);
  }

  #endKey(key: string, ending: Ending): void {
    const entry = this.#pending.get(key);
    if (!entry) return;
    this.#pending.delete(key);
    this.audit.record(entry.call, entry.context, ending);
  }

  /** Ends every call still waiting. */
  close(ending: Ending): void {
    if (this.#pending.size === 0) return;
    const entries = [...this.#pending.values()];
    this.#pending.clear();
    for (const { call, context } of entries) this.audit.record(call, context, ending);
  }
}
