/**
 * A streaming look at JSON-RPC messages (JSON-RPC 2.0 §4–§6) that keeps no more than a few
 * short strings: the tool-call audit (tool-calls.ts) learns a message's id, method, tool name,
 * `result.isError` and `error.code` from bytes as they pass, without parsing or holding a result
 * of any size, and from the beginning of a request body that was too large to keep whole.
 *
 * Input is JSON text, fed in pieces; a document is one message or a batch (an array of them).
 * String contents are skipped with `indexOf`, so the cost is mostly native scanning. Structural
 * characters are only ASCII, which UTF-8 never uses inside a multi-byte character, so bytes are
 * scanned as they are. Malformed input yields no message or a partial one, never an exception.
 */

/** What was seen of one message; absent fields were not seen (or not in the expected type). */
export interface ScannedMessage {
  id?: string | number | null;
  method?: string;
  /** `params.name`: the tool of a `tools/call`. */
  name?: string;
  /** A `result` member (a success response). */
  result: boolean;
  /** An `error` member (an error response). */
  error: boolean;
  /** `result.isError` is `true` (MCP tools: a tool execution error). */
  isError: boolean;
  /** `error.code`. */
  errorCode?: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/** Longest string or number kept (tool names are at most 128 characters: MCP tools, naming). */
const MAX_CAPTURE = 256;
/** Bytes of a string scanned one by one before searching natively for its end. */
const SHORT_STRING = 48;

type Capture = 'key' | 'id' | 'method' | 'name' | 'isError' | 'code' | undefined;

export class JsonRpcScanner {
  #onMessage: (message: ScannedMessage) => void;
  /** Open containers; `#objects[d]` says whether the one at depth d (≤ 3) is an object. */
  #depth = 0;
  #objects: boolean[] = [];
  /** Depth of message objects: 1 for a single message, 2 inside a batch. */
  #messageDepth = 1;
  #expectKey = false;
  /** The current key at the message's depth and the one below it. */
  #keys: Array<string | undefined> = [];
  #message: ScannedMessage | undefined;
  #inString = false;
  #escaped = false;
  #scalar = false;
  #capture: Capture;
  /** A kept string's pieces from earlier chunks (copies); empty while it lies in one chunk. */
  #captured: Buffer[] = [];
  #capturedLength = 0;
  /** A backslash in the kept string: decode its escapes. */
  #escapes = false;
  #scalarText = '';

  constructor(onMessage: (message: ScannedMessage) => void) {
    this.#onMessage = onMessage;
  }

  /** Scans the next piece of the document. */
  write(chunk: Buffer): void {
    let i = 0;
    const end = chunk.length;
    if (end === 0) return;
    if (this.#inString) i = this.#continueString(chunk, 0);
    while (i < end) {
      const byte = chunk[i] as number;
      if (this.#scalar) {
        if (isScalarByte(byte)) {
          const stop = scalarEnd(chunk, i);
          if (this.#capture !== undefined && this.#scalarText.length < MAX_CAPTURE) this.#scalarText += chunk.toString('latin1', i, stop);
          i = stop;
          continue;
        }
        this.#endScalar();
      }
      switch (byte) {
        case 0x7b: // {
        case 0x5b: // [
          this.#open(byte === 0x7b);
          i++;
          break;
        case 0x7d: // }
        case 0x5d: // ]
          this.#close();
          i++;
          break;
        case 0x3a: // :
          this.#expectKey = false;
          i++;
          break;
        case 0x2c: // ,
          this.#expectKey = this.#depth <= 3 && this.#objects[this.#depth] === true;
          i++;
          break;
        case QUOTE:
          this.#inString = true;
          if (this.#expectKey) {
            // A key too long to keep must not leave the previous key in place.
            this.#keys[this.#depth] = undefined;
            this.#startCapture(this.#depth === this.#messageDepth || this.#depth === this.#messageDepth + 1 ? 'key' : undefined);
          } else {
            this.#startCapture(this.#valueCapture());
          }
          i = this.#continueString(chunk, i + 1);
          break;
        case 0x20: case 0x09: case 0x0a: case 0x0d:
          i++;
          break;
        default:
          this.#scalar = true;
          this.#startCapture(this.#valueCapture());
      }
    }
  }

  /** Ends the document; a message still open (a body cut short) is returned, not reported. */
  end(): ScannedMessage | undefined {
    const partial = this.#message;
    this.#depth = 0;
    this.#message = undefined;
    this.#inString = false;
    this.#escaped = false;
    this.#scalar = false;
    this.#capture = undefined;
    this.#keys = [];
    return partial;
  }

  #open(object: boolean): void {
    this.#depth++;
    if (this.#depth === 1) this.#messageDepth = object ? 1 : 2;
    if (this.#depth <= 3) this.#objects[this.#depth] = object;
    this.#keys[this.#depth] = undefined;
    this.#expectKey = object;
    if (object && this.#depth === this.#messageDepth) this.#message = { result: false, error: false, isError: false };
  }

  #close(): void {
    if (this.#depth === this.#messageDepth && this.#message) {
      const message = this.#message;
      this.#message = undefined;
      this.#onMessage(message);
    }
    if (this.#depth > 0) this.#depth--;
    this.#expectKey = false;
  }

  /** What a value starting here is, when it is one of the few the audit needs. */
  #valueCapture(): Capture {
    if (!this.#message) return undefined;
    const top = this.#keys[this.#messageDepth];
    if (this.#depth === this.#messageDepth) return top === 'id' ? 'id' : top === 'method' ? 'method' : undefined;
    if (this.#depth !== this.#messageDepth + 1) return undefined;
    const key = this.#keys[this.#depth];
    if (top === 'params' && key === 'name') return 'name';
    if (top === 'result' && key === 'isError') return 'isError';
    if (top === 'error' && key === 'code') return 'code';
    return undefined;
  }

  /** Skips string content from `i`; returns the index after the closing quote, or `chunk.length`. */
  #continueString(chunk: Buffer, i: number): number {
    const end = chunk.length;
    const start = i;
    if (this.#escaped) {
      this.#escaped = false;
      i++;
    }
    // Most strings (keys, ids, short values) end within a few bytes: a plain loop finds their
    // end sooner than a native search starts paying off.
    const near = Math.min(end, i + SHORT_STRING);
    while (i < near) {
      const byte = chunk[i] as number;
      if (byte === QUOTE) {
        this.#inString = false;
        this.#endString(chunk, start, i);
        return i + 1;
      }
      if (byte === BACKSLASH) {
        this.#escapes = true;
        i += 2;
      } else {
        i++;
      }
    }
    if (i > end) {
      this.#escaped = true;
      this.#keep(chunk, start, end);
      return end;
    }
    let quote = -2;
    let slash = -2;
    while (i < end) {
      if (quote !== -1 && quote < i) quote = chunk.indexOf(QUOTE, i);
      if (slash !== -1 && slash < i) slash = chunk.indexOf(BACKSLASH, i);
      if (slash !== -1 && (quote === -1 || slash < quote)) {
        this.#escapes = true;
        i = slash + 2;
        if (i > end) this.#escaped = true;
        continue;
      }
      if (quote === -1) break;
      this.#inString = false;
      this.#endString(chunk, start, quote);
      return quote + 1;
    }
    this.#keep(chunk, start, end);
    return end;
  }

  #startCapture(capture: Capture): void {
    this.#capture = capture;
    this.#captured = [];
    this.#capturedLength = 0;
    this.#escapes = false;
    this.#scalarText = '';
  }

  /** Keeps a piece of a string that goes on in the next chunk. */
  #keep(chunk: Buffer, from: number, to: number): void {
    if (this.#capture === undefined || to <= from) return;
    this.#capturedLength += to - from;
    if (this.#capturedLength > MAX_CAPTURE) {
      this.#capture = undefined;
      return;
    }
    // A copy: the chunk belongs to the stream and may be large.
    this.#captured.push(Buffer.from(chunk.subarray(from, to)));
  }

  /** The kept string, its last piece being `chunk` from `from` to `to`; undefined when too long or malformed. */
  #string(chunk: Buffer, from: number, to: number): string | undefined {
    let raw: string;
    if (this.#captured.length === 0) {
      if (to - from > MAX_CAPTURE) return undefined;
      raw = chunk.toString('utf8', from, to);
    } else {
      this.#keep(chunk, from, to);
      if (this.#capture === undefined) return undefined;
      raw = Buffer.concat(this.#captured).toString('utf8');
    }
    if (!this.#escapes) return raw;
    try {
      // The raw text between the quotes, escapes included: JSON.parse decodes them exactly.
      return JSON.parse(`"${raw}"`) as string;
    } catch {
      return undefined;
    }
  }

  #endString(chunk: Buffer, from: number, to: number): void {
    if (this.#capture === undefined) return;
    const value = this.#string(chunk, from, to);
    const capture = this.#capture;
    this.#capture = undefined;
    if (value === undefined || capture === undefined) return;
    const message = this.#message;
    if (capture === 'key') {
      this.#keys[this.#depth] = value;
      if (message && this.#depth === this.#messageDepth) {
        if (value === 'result') message.result = true;
        else if (value === 'error') message.error = true;
      }
    } else if (message && capture === 'id') message.id = value;
    else if (message && capture === 'method') message.method = value;
    else if (message && capture === 'name') message.name = value;
  }

  #endScalar(): void {
    this.#scalar = false;
    const capture = this.#capture;
    this.#capture = undefined;
    const message = this.#message;
    if (capture === undefined || !message) return;
    const text = this.#scalarText;
    if (capture === 'isError') message.isError = text === 'true';
    else if (capture === 'id' && text === 'null') message.id = null;
    else if (capture === 'id' || capture === 'code') {
      const number = Number(text);
      if (text === '' || !Number.isFinite(number)) return;
      if (capture === 'id') message.id = number;
      else message.errorCode = number;
    }
  }
}

function isScalarByte(byte: number): boolean {
  return byte !== 0x2c && byte !== 0x7d && byte !== 0x5d && byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09
    && byte !== 0x3a && byte !== 0x7b && byte !== 0x5b && byte !== QUOTE;
}

function scalarEnd(chunk: Buffer, i: number): number {
  while (i < chunk.length && isScalarByte(chunk[i] as number)) i++;
  return i;
}

/** Every whole message in `text` (a body, or a body's beginning), and the one it stops in, if any. */
export function scanMessages(text: Buffer): { messages: ScannedMessage[]; partial: ScannedMessage | undefined } {
  const messages: ScannedMessage[] = [];
  const scanner = new JsonRpcScanner((message) => messages.push(message));
  scanner.write(text);
  return { messages, partial: scanner.end() };
}
