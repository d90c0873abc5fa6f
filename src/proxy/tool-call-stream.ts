/**
 * Tool calls forwarded over Streamable HTTP (http.ts): the calls are read from the request
 * body the gateway streamed to the server (what MeteredBody remembers of it), and their answers
 * from the server's response as it passes to the client: one JSON-RPC response or batch as
 * `application/json`, or an event stream whose events carry the responses among progress
 * notifications and server requests (MCP basic/transports, "Sending Messages to the Server").
 *
 * The response is watched with a `data` listener beside the relay's pipe, so it adds no stream
 * and no buffering; only the few fields the audit needs are kept (json-rpc-scan.ts), whatever
 * the size of a result. A call is recorded when its answer has passed, or when the response
 * ends (`upstream_error`) or the client leaves (`cancelled`) first.
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { JSONRPC_ERRORS } from '../errors/index.ts';
import { JsonRpcScanner, type ScannedMessage } from './json-rpc-scan.ts';
import { toolCallsInBody, ToolCallLedger, type Ending, type ToolCallWatch } from './tool-calls.ts';

/** The request body as far as the gateway remembers it (request-body.ts). */
export interface RememberedBody {
  remembered(): { text: Buffer; whole: boolean };
}

/** The calls in the forwarded body, waiting for their answers; undefined when it holds none. */
export function forwardedCalls(watch: ToolCallWatch, body: RememberedBody): ToolCallLedger | undefined {
  const { text, whole } = body.remembered();
  const found = toolCallsInBody(text, whole);
  if (!found) return undefined;
  const ledger = new ToolCallLedger(watch.audit, found.ids);
  for (const call of found.calls) ledger.open(call, watch.context);
  return ledger;
}

/**
 * Records the calls of a request the gateway answered itself (`status`: 502, 503, 504, or 413
 * for a body too large), or that the client left before any answer (`cancelled`).
 */
export function failForwardedCalls(watch: ToolCallWatch | undefined, body: RememberedBody | undefined, status: number | 'cancelled'): void {
  if (!watch || !body) return;
  const ending: Ending = status === 'cancelled' ? { outcome: 'cancelled' }
    : status === 413 ? { outcome: 'rpc_error', errorCode: JSONRPC_ERRORS.payload_too_large, status }
      : { outcome: 'upstream_error', status };
  forwardedCalls(watch, body)?.close(ending);
}

/**
 * Records the calls of a request refused before its body was read (an open circuit: 503): the
 * body is read from `req` as it drains, its first 64 KiB at most.
 */
export function failUnreadCalls(watch: ToolCallWatch | undefined, req: Readable, body: Buffer | undefined, status: number): void {
  if (!watch) return;
  if (body) {
    failForwardedCalls(watch, { remembered: () => ({ text: body, whole: true }) }, status);
    return;
  }
  const chunks: Buffer[] = [];
  let length = 0;
  let whole = true;
  const onData = (chunk: Buffer) => {
    if (length >= REMEMBERED_BYTES) {
      whole = false;
      return;
    }
    chunks.push(chunk);
    length += chunk.length;
  };
  req.on('data', onData);
  req.once('end', () => {
    req.off('data', onData);
    failForwardedCalls(watch, { remembered: () => ({ text: Buffer.concat(chunks), whole }) }, status);
  });
}

/**
 * Watches the server's answer on its way to the client. Call right before the body is piped,
 * so that no chunk passes unseen.
 */
export function watchAnswers(ledger: ToolCallLedger, body: Readable, status: number, contentType: string, res: ServerResponse): void {
  const answer = (message: ScannedMessage) => {
    if (ledger.answer(message, status)) return;
    // JSON-RPC 2.0 §5: an error whose request's id could not be read has id null; over HTTP it
    // can only be about this request (a server refusing the session or the body).
    if (message.error && message.id === null) ledger.close({ outcome: 'rpc_error', errorCode: message.errorCode, status });
  };
  const scanner = new JsonRpcScanner(answer);
  const events = contentType.startsWith('text/event-stream') ? new EventData(scanner) : undefined;
  const json = contentType.startsWith('application/json');
  const onData = (chunk: Buffer) => {
    if (ledger.size === 0) return;
    if (events) events.write(chunk);
    else if (json) scanner.write(chunk);
  };
  const done = (outcome: 'upstream_error' | 'cancelled') => () => {
    body.off('data', onData);
    ledger.close({ outcome, status });
  };
  body.on('data', onData);
  body.once('end', done('upstream_error'));
  body.once('error', done('upstream_error'));
  // The client gone first: the relay aborts the upstream request, and the call had no answer.
  res.once('close', done('cancelled'));
}

/** As much of a body as request-body.ts remembers. */
const REMEMBERED_BYTES = 64 * 1024;
const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
const NEWLINE = Buffer.from('\n');

/**
 * The `data` of server-sent events, fed to a scanner, one document per event (WHATWG HTML,
 * "event stream interpretation": lines end in CRLF, LF or CR; `:` starts a comment; one space
 * after the colon is dropped; data lines join with LF; a blank line ends the event).
 */
class EventData {
  #scanner: JsonRpcScanner;
  #lineStart = true;
  /** The field of the current line: reading its name, its data, or skipping it. */
  #field: 'name' | 'data' | 'skip' = 'name';
  #name = '';
  #dropSpace = false;
  #afterCR = false;
  #dataLines = 0;

  constructor(scanner: JsonRpcScanner) {
    this.#scanner = scanner;
  }

  write(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      const byte = chunk[i] as number;
      if (this.#afterCR) {
        this.#afterCR = false;
        if (byte === LF) {
          i++;
          continue;
        }
      }
      if (byte === LF || byte === CR) {
        if (this.#lineStart) this.#endEvent();
        this.#lineStart = true;
        this.#field = 'name';
        this.#name = '';
        this.#afterCR = byte === CR;
        i++;
        continue;
      }
      this.#lineStart = false;
      if (this.#field === 'name') {
        if (byte === COLON) {
          this.#field = this.#name === 'data' ? 'data' : 'skip';
          if (this.#field === 'data') this.#startData();
          this.#dropSpace = true;
        } else if (this.#name.length < 8) {
          this.#name += String.fromCharCode(byte);
        } else {
          this.#field = 'skip';
        }
        i++;
        continue;
      }
      const stop = lineEnd(chunk, i);
      if (this.#field === 'data') {
        let from = i;
        if (this.#dropSpace && chunk[from] === SPACE) from++;
        if (from < stop) this.#scanner.write(chunk.subarray(from, stop));
      }
      this.#dropSpace = false;
      i = stop;
    }
  }

  #startData(): void {
    if (this.#dataLines++ > 0) this.#scanner.write(NEWLINE);
  }

  #endEvent(): void {
    this.#dataLines = 0;
    this.#scanner.end();
  }
}

function lineEnd(chunk: Buffer, from: number): number {
  const lf = chunk.indexOf(LF, from);
  const cr = chunk.indexOf(CR, from);
  if (lf === -1) return cr === -1 ? chunk.length : cr;
  return cr === -1 ? lf : Math.min(lf, cr);
}
