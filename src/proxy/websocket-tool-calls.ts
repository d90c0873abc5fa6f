/**
 * The tool calls of one WebSocket connection (websocket.ts), for the audit trail (tool-calls.ts):
 * `tools/call` requests seen on their way to the server, their answers on the way back. A
 * client message costs a byte search unless it holds a call; a server message, nothing unless
 * a call is waiting. Calls still waiting when the connection closes were cancelled (the client
 * closed it) or left without an answer (the server did).
 */
import { scanMessages } from './json-rpc-scan.ts';
import { ToolCallLedger, toolCallsOf, type CallContext, type ToolCallAudit } from './tool-calls.ts';

const TOOLS_CALL = Buffer.from('"tools/call"');
const CANCELLED = Buffer.from('"notifications/cancelled"');

export class WebSocketToolCalls {
  #ledger: ToolCallLedger;
  #who: Omit<CallContext, 'startedAt'>;

  constructor(audit: ToolCallAudit, who: Omit<CallContext, 'startedAt'>) {
    this.#ledger = new ToolCallLedger(audit);
    this.#who = who;
  }

  /** A client message the gateway passed to the server. */
  sent(data: Buffer): void {
    const call = data.indexOf(TOOLS_CALL) !== -1;
    const cancel = this.#ledger.size > 0 && data.indexOf(CANCELLED) !== -1;
    if (!call && !cancel) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.toString('utf8'));
    } catch {
      return; // the server answers a parse error; no tool was called
    }
    const messages = Array.isArray(parsed) ? parsed as unknown[] : [parsed];
    if (cancel) {
      for (const message of messages) {
        const { method, params } = (message ?? {}) as { method?: unknown; params?: { requestId?: unknown } };
        if (method === 'notifications/cancelled') this.#ledger.end(params?.requestId, { outcome: 'cancelled' });
      }
    }
    if (!call) return;
    const startedAt = performance.now();
    for (const found of toolCallsOf(messages)) this.#ledger.open(found, { ...this.#who, startedAt });
  }

  /** A server message on its way to the client. */
  received(data: Buffer): void {
    if (this.#ledger.size === 0) return;
    for (const message of scanMessages(data).messages) this.#ledger.answer(message);
  }

  /** The connection closed; `by` the side that closed it. */
  closed(by: 'client' | 'upstream' | undefined): void {
    this.#ledger.close({ outcome: by === 'client' ? 'cancelled' : 'upstream_error' });
  }
}
