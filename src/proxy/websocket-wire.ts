/**
 * The wire of a relayed WebSocket (websocket.ts): messages piped with backpressure, JSON-RPC
 * refusals for messages the gateway does not pass, closing handshakes, and the plain HTTP answer
 * to an upgrade the gateway refuses.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import { jsonRpcError, type JsonRpcErrorKind, type JsonRpcId } from '../errors/index.ts';

/** Past this many bytes queued towards one peer, the other is paused until the queue drains. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
/** RFC 6455 §5.5: a close frame's reason is at most 123 bytes. */
const MAX_REASON_BYTES = 123;

/** Relays `from`'s messages to `to` as they are (text or binary), pausing `from` while `to` is backed up. */
/** `observe` sees each message relayed (the tool-call audit). */
export function pipe(from: WebSocket, to: WebSocket, admit: (data: RawData) => boolean, observe?: (data: RawData) => void): void {
  let paused = false;
  from.on('message', (data, isBinary) => {
    if (to.readyState !== WebSocket.OPEN || !admit(data)) return;
    observe?.(data);
    to.send(data, { binary: isBinary }, () => {
      if (paused && to.bufferedAmount < LOW_WATER) {
        paused = false;
        from.resume();
      }
    });
    if (!paused && to.bufferedAmount > HIGH_WATER) {
      paused = true;
      from.pause();
    }
  });
}

export function toBuffer(data: RawData): Buffer {
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
}

/** A JSON-RPC error for each request in a message or batch; undefined when it holds no request. */
export function refusals(body: Buffer, kind: JsonRpcErrorKind, message: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return JSON.stringify(jsonRpcError('parse_error', 'the message is not valid JSON'));
  }
  const items = (Array.isArray(parsed) ? parsed : [parsed]) as Array<{ id?: unknown; method?: unknown } | null>;
  const errors = items
    .filter((item) => item && typeof item.method === 'string' && (typeof item.id === 'string' || typeof item.id === 'number'))
    .map((item) => jsonRpcError(kind, message, item!.id as JsonRpcId));
  if (errors.length === 0) return undefined;
  return JSON.stringify(Array.isArray(parsed) ? errors : errors[0]);
}

/** Starts a closing handshake, unless one is under way; a code ws refuses to send becomes 1000. */
export function closeWith(socket: WebSocket, code: number | undefined, reason: string | Buffer = ''): void {
  if (socket.readyState === WebSocket.CLOSING || socket.readyState === WebSocket.CLOSED) return;
  let text = typeof reason === 'string' ? reason : reason.toString('utf8');
  while (Buffer.byteLength(text) > MAX_REASON_BYTES) text = text.slice(0, -1);
  try {
    if (code === undefined) socket.close();
    else socket.close(code, text);
  } catch {
    socket.close(1000);
  }
}

/** An HTTP answer on a socket that is not upgraded: status, JSON-RPC error body, then close. */
export function refuseUpgrade(socket: Duplex, status: number, kind: JsonRpcErrorKind, message: string, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(jsonRpcError(kind, message));
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    ...Object.entries({ ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), connection: 'close' })
      .map(([name, value]) => `${name}: ${value}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}
