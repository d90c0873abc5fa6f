/**
 * Server-sent events, read and written by the gateway where it speaks for one side: the legacy
 * HTTP+SSE bridge reads the upstream's stream and writes the client's. (Plain Streamable HTTP
 * forwarding never parses events; it passes the bytes through.)
 *
 * Parsing follows the WHATWG HTML "event stream interpretation": lines end in CRLF, LF or CR;
 * `:` starts a comment; one space after the field's colon is dropped; `data` lines join with
 * LF; a blank line dispatches the event, unless it has no data.
 */

export interface ServerSentEvent {
  /** The `event` field, `message` when absent. */
  event: string;
  data: string;
  id?: string | undefined;
}

export class EventTooLargeError extends Error {
  constructor(limit: number) {
    super(`server-sent event over ${limit} characters`);
    this.name = 'EventTooLargeError';
  }
}

/** The events of a `text/event-stream` body, as they arrive. One event may hold at most `maxEventChars`. */
export async function* readEventStream(body: AsyncIterable<Uint8Array | string>, maxEventChars = 64 * 1024 * 1024): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  let first = true;
  let event = '';
  let data: string[] = [];
  let dataLength = 0;
  let id: string | undefined;
  // A chunk that ended in CR: an LF opening the next chunk belongs to it (CRLF split in two).
  let afterCR = false;

  const take = (line: string): ServerSentEvent | undefined => {
    if (line === '') {
      const dispatched = data.length > 0 ? { event: event || 'message', data: data.join('\n'), id } : undefined;
      event = '';
      data = [];
      dataLength = 0;
      return dispatched;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') {
      dataLength += value.length + 1;
      if (dataLength > maxEventChars) throw new EventTooLargeError(maxEventChars);
      data.push(value);
    } else if (field === 'event') {
      event = value;
    } else if (field === 'id' && !value.includes('\0')) {
      id = value;
    }
    return undefined;
  };

  for await (const chunk of body) {
    buffer += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    if (first && buffer.length > 0) {
      if (buffer.startsWith('\uFEFF')) buffer = buffer.slice(1);
      first = false;
    }
    if (afterCR && buffer.length > 0) {
      if (buffer.startsWith('\n')) buffer = buffer.slice(1);
      afterCR = false;
    }
    let start = 0;
    for (let index = 0; index < buffer.length; index++) {
      const char = buffer[index];
      if (char !== '\n' && char !== '\r') continue;
      const dispatched = take(buffer.slice(start, index));
      if (char === '\r') {
        if (index === buffer.length - 1) afterCR = true;
        else if (buffer[index + 1] === '\n') index++;
      }
      start = index + 1;
      if (dispatched) yield dispatched;
    }
    buffer = buffer.slice(start);
    if (buffer.length > maxEventChars) throw new EventTooLargeError(maxEventChars);
  }
  // An event not ended by a blank line when the stream ends is dropped (WHATWG: "end of file").
}

/** One JSON-RPC message as an SSE `message` event. JSON text has no raw line breaks, so one data line carries it. */
export function messageEvent(json: string): string {
  return `event: message\ndata: ${json}\n\n`;
}
