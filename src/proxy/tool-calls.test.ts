import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { JsonRpcScanner, scanMessages, type ScannedMessage } from './json-rpc-scan.ts';
import { auditedArguments, compileArgumentRules } from './tool-call-arguments.ts';
import { failUnreadCalls, watchAnswers } from './tool-call-stream.ts';
import { ToolCallAudit, ToolCallLedger, toolCallsInBody, type CallContext } from './tool-calls.ts';

function recorder(settings?: ConstructorParameters<typeof ToolCallAudit>[3]) {
  const lines: Array<Record<string, unknown>> = [];
  const audit = new ToolCallAudit({ record: (event, fields) => lines.push({ event, ...fields }) }, 'demo', 'streamable-http', settings);
  return { audit, lines };
}

const who: CallContext = { requestId: 'req-1', account: 'dev:alice@example.com', email: 'alice@example.com', client: 'client-1', startedAt: performance.now() };

/** Scans `text` cut into pieces of `size` bytes. */
function scanInPieces(text: string, size: number): ScannedMessage[] {
  const found: ScannedMessage[] = [];
  const scanner = new JsonRpcScanner((message) => found.push(message));
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length; at += size) scanner.write(bytes.subarray(at, at + size));
  scanner.end();
  return found;
}

describe('JsonRpcScanner', () => {
  const tricky = JSON.stringify({
    jsonrpc: '2.0',
    result: { content: [{ type: 'text', text: 'quote " backslash \\ brace } bracket ] "isError": true, \\"id\\": 9 ✓' }], structuredContent: { id: 7, error: { code: 1 } }, isError: true },
    id: 'call-\\"1',
  });

  it('finds id, result and isError wherever the pieces break', () => {
    for (const size of [1, 2, 3, 7, 64, 10_000]) {
      expect(scanInPieces(tricky, size)).toEqual([{ id: 'call-\\"1', result: true, error: false, isError: true }]);
    }
  });

  it('reads an error code, a numeric id and a request method and tool name', () => {
    expect(scanMessages(Buffer.from('{"jsonrpc":"2.0","id":42,"error":{"code":-32602,"message":"Tool x not found"}}')).messages)
      .toEqual([{ id: 42, result: false, error: true, isError: false, errorCode: -32602 }]);
    expect(scanMessages(Buffer.from(' { "method" : "tools/call" , "params" : { "arguments" : { "name" : "not this" }, "name" : "add" } , "id" : 3 } ')).messages)
      .toEqual([{ id: 3, method: 'tools/call', name: 'add', result: false, error: false, isError: false }]);
  });

  it('reads each message of a batch', () => {
    const batch = '[{"jsonrpc":"2.0","id":1,"result":{"isError":false}},{"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"x"}},{"id":null,"error":{"code":-32700}}]';
    expect(scanInPieces(batch, 5).map((message) => [message.id, message.result, message.error, message.errorCode])).toEqual([
      [1, true, false, undefined], [2, false, true, -1], [null, false, true, -32700],
    ]);
  });

  it('scans a large result without keeping it, and a too-long key does not pass for the previous one', () => {
    const big = `{"jsonrpc":"2.0","result":{"content":[{"type":"text","text":"${'x'.repeat(2_000_000)}"}],"isError":false},"id":"${'k'.repeat(300)}","id":5}`;
    expect(scanInPieces(big, 65_536)).toEqual([{ id: 5, result: true, error: false, isError: false }]);
    const longKey = `{"id":1,"${'a'.repeat(400)}":"nope","method":"ping"}`;
    expect(scanMessages(Buffer.from(longKey)).messages).toEqual([{ id: 1, method: 'ping', result: false, error: false, isError: false }]);
  });

  it('returns the message a body is cut short in', () => {
    const { messages, partial } = scanMessages(Buffer.from('{"method":"tools/call","params":{"name":"upload","arguments":{"data":"AAAA'));
    expect(messages).toEqual([]);
    expect(partial).toMatchObject({ method: 'tools/call', name: 'upload' });
    expect(partial?.id).toBeUndefined();
  });
});

describe('toolCallsInBody', () => {
  it('costs nothing for a body without tools/call, and ignores the words inside other requests', () => {
    expect(toolCallsInBody(Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/list"}'), true)).toBeUndefined();
    expect(toolCallsInBody(Buffer.from('{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"tools/call","x":"\\"tools/call\\""}}'), true)).toBeUndefined();
    expect(toolCallsInBody(Buffer.from('{"jsonrpc":"2.0","method":"tools/call","params":{"name":"add"}}'), true)).toBeUndefined(); // a notification
  });

  it('reads a whole body with arguments, a batch, and a body cut short without them', () => {
    const single = toolCallsInBody(Buffer.from('{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"add","arguments":{"a":1}}}'), true);
    expect(single?.calls).toEqual([{ id: 'a', name: 'add', arguments: { a: 1 } }]);
    const batch = toolCallsInBody(Buffer.from('[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}]'), true);
    expect(batch?.calls.map((call) => [call.id, call.name])).toEqual([[2, 'echo']]);
    expect([...batch!.ids]).toEqual(['number:1', 'number:2']);
    const cut = toolCallsInBody(Buffer.from('{"method":"tools/call","params":{"name":"upload","arguments":{"blob":"QUFB'), false);
    expect(cut?.calls).toEqual([{ id: undefined, name: 'upload' }]);
  });
});

describe('argument redaction', () => {
  const rules = compileArgumentRules({ redact: ['ssn', 'connection.host', 'items.note'], maxBytes: 4096 });

  it('redacts secret-looking keys at any depth, configured names and dotted paths, without regard to case', () => {
    const result = auditedArguments({
      query: 'select 1',
      Password: 'hunter2',
      nested: { deep: [{ GitHub_Token: 'ghp_x', ok: true }], 'X-Api-Key': 'k', SSN: '123' },
      connection: { host: 'db.internal', port: 5432, AUTHORIZATION: 'Basic x' },
      items: [{ note: 'private', title: 'kept' }],
      note: 'kept: the path names items.note only',
    }, rules);
    expect(JSON.parse(JSON.stringify(result))).toEqual({
      arguments: {
        query: 'select 1',
        Password: '[redacted]',
        nested: { deep: [{ GitHub_Token: '[redacted]', ok: true }], 'X-Api-Key': '[redacted]', SSN: '[redacted]' },
        connection: { host: '[redacted]', port: 5432, AUTHORIZATION: '[redacted]' },
        items: [{ note: '[redacted]', title: 'kept' }],
        note: 'kept: the path names items.note only',
      },
    });
  });

  it('leaves out arguments over the size limit, measured after redaction', () => {
    const small = compileArgumentRules({ redact: [], maxBytes: 64 });
    expect(auditedArguments({ text: 'x'.repeat(100) }, small)).toEqual({ arguments_omitted: '111 bytes, over 64' });
    expect(auditedArguments({ token: 'x'.repeat(100) }, small)).toEqual({ arguments: expect.objectContaining({ token: '[redacted]' }) });
  });
});

describe('ToolCallAudit lines', () => {
  it('writes who, which tool, the outcome and the duration; arguments only when the service opts in', () => {
    const plain = recorder();
    plain.audit.record({ id: 1, name: 'add', arguments: { a: 1 } }, { ...who, session: 'secret-session-id' }, { outcome: 'ok', status: 200 });
    expect(plain.lines[0]).toMatchObject({
      event: 'tool.called', request_id: 'req-1', account: 'dev:alice@example.com', email: 'alice@example.com', client: 'client-1',
      service: 'demo', transport: 'streamable-http', tool: 'add', rpc_id: 1, outcome: 'ok', status: 200, duration_ms: expect.any(Number),
    });
    expect(plain.lines[0]).not.toHaveProperty('arguments');
    expect(plain.lines[0]?.session).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.stringify(plain.lines)).not.toContain('secret-session-id');

    const opted = recorder({ tool_arguments: true, redact: ['a'], max_argument_bytes: 4096 });
    opted.audit.record({ id: 1, name: 'add', arguments: { a: 1, b: 2 } }, who, { outcome: 'ok' });
    opted.audit.record({ id: 2, name: 'upload' }, who, { outcome: 'ok' });
    expect(opted.lines[0]?.arguments).toEqual({ a: '[redacted]', b: 2 });
    expect(opted.lines[1]?.arguments_omitted).toMatch(/not read/);
  });
});

describe('ToolCallLedger', () => {
  it('matches a call whose id was not read with an answer to none of the other requests', () => {
    const { audit, lines } = recorder();
    const ledger = new ToolCallLedger(audit, new Set(['number:1']));
    ledger.open({ id: undefined, name: 'upload' }, who);
    expect(ledger.answer({ id: 1, result: true, error: false, isError: false })).toBe(false);
    expect(ledger.answer({ id: 'x', result: true, error: false, isError: true })).toBe(true);
    expect(lines.map((line) => [line.tool, line.outcome])).toEqual([['upload', 'tool_error']]);
  });

  it('counts the gateway\'s own upstream error codes as upstream_error', () => {
    const { audit, lines } = recorder();
    const ledger = new ToolCallLedger(audit);
    ledger.open({ id: 1, name: 'a' }, who);
    ledger.open({ id: 2, name: 'b' }, who);
    ledger.answer({ id: 1, result: false, error: true, isError: false, errorCode: -32010 });
    ledger.answer({ id: 2, result: false, error: true, isError: false, errorCode: -32602 });
    expect(lines.map((line) => [line.tool, line.outcome, line.error_code])).toEqual([['a', 'upstream_error', -32010], ['b', 'rpc_error', -32602]]);
  });
});

describe('ToolCallLedger limits', () => {
  it('keeps no arguments unless the lines show them, ends a call whose id is reused, and holds at most 1000 calls', () => {
    const { audit, lines } = recorder();
    const ledger = new ToolCallLedger(audit);
    ledger.open({ id: 1, name: 'first', arguments: { blob: 'x'.repeat(10_000) } }, who);
    ledger.open({ id: 1, name: 'again' }, who);
    expect(lines.map((line) => [line.tool, line.outcome])).toEqual([['first', 'rpc_error']]);
    expect(lines[0]).not.toHaveProperty('arguments');
    for (let id = 2; id <= 1001; id++) ledger.open({ id, name: `t${id}` }, who);
    expect(ledger.size).toBe(1000);
    // The oldest waiting (the reused id 1) was given up to make room.
    expect(lines.map((line) => [line.tool, line.outcome])).toEqual([['first', 'rpc_error'], ['again', 'upstream_error']]);

    const kept = recorder({ tool_arguments: true, redact: [], max_argument_bytes: 4096 });
    const withArguments = new ToolCallLedger(kept.audit);
    withArguments.open({ id: 'a', name: 'search', arguments: { query: 'x' } }, who);
    withArguments.answer({ id: 'a', result: true, error: false, isError: false });
    expect(kept.lines[0]?.arguments).toEqual({ query: 'x' });
  });
});

describe('watchAnswers', () => {
  function setup(ids: Array<number | undefined>) {
    const { audit, lines } = recorder();
    const ledger = new ToolCallLedger(audit, new Set(ids.filter((id) => id !== undefined).map((id) => `number:${id}`)));
    for (const id of ids) ledger.open({ id, name: `tool${id ?? ''}` }, who);
    const body = new PassThrough();
    const res = Object.assign(new EventEmitter(), { writableFinished: false }) as unknown as ServerResponse;
    return { lines, ledger, body, res };
  }

  it('finds the answer in an event stream after progress and a server request, split anywhere', async () => {
    const stream = [
      ': comment\r\n\r\n',
      'event: message\r\nid: 1\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}\r\n\r\n',
      'data: {"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}\n\n',
      'data:{"jsonrpc":"2.0","id":7,\ndata: "result":{"content":[],"isError":true}}\r\r',
    ].join('');
    for (const size of [1, 3, 1000]) {
      const { lines, ledger, body, res } = setup([7]);
      watchAnswers(ledger, body, 200, 'text/event-stream', res);
      const bytes = Buffer.from(stream);
      for (let at = 0; at < bytes.length; at += size) body.write(bytes.subarray(at, at + size));
      body.end();
      await new Promise((resolve) => body.once('end', resolve).resume());
      expect(lines.map((line) => [line.tool, line.outcome, line.status])).toEqual([['tool7', 'tool_error', 200]]);
    }
  });

  it('reads a JSON answer, records upstream_error when the response ends without one, cancelled when the client leaves', async () => {
    const json = setup([3]);
    watchAnswers(json.ledger, json.body, 200, 'application/json', json.res);
    json.body.end('{"jsonrpc":"2.0","id":3,"result":{"content":[]}}');
    await new Promise((resolve) => json.body.once('end', resolve).resume());
    expect(json.lines.map((line) => line.outcome)).toEqual(['ok']);

    const ended = setup([4]);
    watchAnswers(ended.ledger, ended.body, 200, 'text/event-stream', ended.res);
    ended.body.end('data: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n');
    await new Promise((resolve) => ended.body.once('end', resolve).resume());
    expect(ended.lines.map((line) => line.outcome)).toEqual(['upstream_error']);

    const left = setup([5]);
    watchAnswers(left.ledger, left.body, 200, 'text/event-stream', left.res);
    left.body.write('data: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\n\n');
    (left.res as unknown as EventEmitter).emit('close');
    expect(left.lines.map((line) => line.outcome)).toEqual(['cancelled']);
  });

  it('takes an error with a null id as the answer to the request', async () => {
    const refused = setup([undefined]);
    watchAnswers(refused.ledger, refused.body, 404, 'application/json', refused.res);
    refused.body.end('{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}');
    await new Promise((resolve) => refused.body.once('end', resolve).resume());
    expect(refused.lines.map((line) => [line.outcome, line.error_code, line.status])).toEqual([['rpc_error', -32001, 404]]);
  });

  it('reads the calls of a body the gateway refused without forwarding (an open circuit)', async () => {
    const { audit, lines } = recorder();
    const req = new PassThrough();
    failUnreadCalls({ audit, context: who }, req, undefined, 503);
    req.resume();
    req.end('{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"add","arguments":{}}}');
    await new Promise((resolve) => req.once('end', resolve));
    expect(lines.map((line) => [line.tool, line.rpc_id, line.outcome, line.status])).toEqual([['add', 11, 'upstream_error', 503]]);
  });
});
