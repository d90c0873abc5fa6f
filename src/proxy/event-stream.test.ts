import { describe, expect, it } from 'vitest';
import { EventTooLargeError, messageEvent, readEventStream, type ServerSentEvent } from './event-stream.ts';

async function read(chunks: string[], max?: number): Promise<ServerSentEvent[]> {
  const events: ServerSentEvent[] = [];
  const encoded = chunks.map((chunk) => new TextEncoder().encode(chunk));
  for await (const event of readEventStream((async function* () { yield* encoded; })(), max)) events.push(event);
  return events;
}

describe('readEventStream', () => {
  it('reads named and unnamed events, joins data lines and drops comments', async () => {
    expect(await read([': hello\n\nevent: endpoint\ndata: /messages?sessionId=1\n\ndata: a\ndata:b\nid: 7\n\n'])).toEqual([
      { event: 'endpoint', data: '/messages?sessionId=1', id: undefined },
      { event: 'message', data: 'a\nb', id: '7' },
    ]);
  });

  it('accepts CRLF, CR and LF line ends, also split across chunks, and a leading BOM', async () => {
    expect(await read(['\uFEFFdata: one\r', '\n\r', '\ndata: two\r\r', 'data: three\n', '\n'])).toEqual([
      { event: 'message', data: 'one', id: undefined },
      { event: 'message', data: 'two', id: undefined },
      { event: 'message', data: 'three', id: undefined },
    ]);
  });

  it('keeps a multi-byte character split between chunks', async () => {
    const bytes = new TextEncoder().encode('data: héllo\n\n');
    const events: ServerSentEvent[] = [];
    for await (const event of readEventStream((async function* () { yield bytes.slice(0, 8); yield bytes.slice(8); })())) events.push(event);
    expect(events.map((event) => event.data)).toEqual(['héllo']);
  });

  it('does not dispatch an event without data, nor one cut off by the end of the stream', async () => {
    expect(await read(['event: ping\n\ndata: cut'])).toEqual([]);
  });

  it('refuses an event over the size limit', async () => {
    await expect(read([`data: ${'x'.repeat(100)}\n\n`], 50)).rejects.toBeInstanceOf(EventTooLargeError);
    await expect(read(['x'.repeat(100)], 50)).rejects.toBeInstanceOf(EventTooLargeError);
  });

  it('writes a message event the reader reads back', async () => {
    const json = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { text: 'a\nb' } });
    expect(await read([messageEvent(json)])).toEqual([{ event: 'message', data: json, id: undefined }]);
  });
});
