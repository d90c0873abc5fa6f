/**
 * The access log: exactly one line per request, with the request id sent to the MCP server,
 * the path without its query string, the status, and 499 for a client that left first.
 */
import { createServer, type Server } from 'node:http';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer } from '../../src/demo/index.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';

let gateway: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;
let slow: Server;
const seenRequestIds: string[] = [];

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
  // Records the request id it is sent, and answers only after a while (for the 499 case).
  slow = createServer((req, res) => {
    seenRequestIds.push(String(req.headers['x-request-id']));
    req.resume();
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{}}'), 1500).unref();
  });
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
  const slowPort = (slow.address() as { port: number }).port;
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { domains: ['example.com'] } },
    services: { demo: { upstream: demo.url, default: true }, slow: { upstream: `http://127.0.0.1:${slowPort}/mcp` } },
  });
});

afterAll(async () => {
  await gateway?.close();
  await demo?.close();
  await new Promise((resolve) => slow?.close(resolve));
});

const accessLines = () => gateway.logs.filter((line) => line.msg === 'request completed');
const linesOf = (reqId: string) => gateway.logs.filter((line) => line.reqId === reqId);

describe('access log', () => {
  it('writes one line per request, with the id the MCP server saw and no query string', async () => {
    const flow = await runCodeFlow(gateway);
    const token = String((await redeem(gateway, flow)).body.access_token);
    const before = accessLines().length;
    const answer = await fetch(`${gateway.origin}/demo/mcp?probe=secret-query`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-request-id': 'trace-me-42' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'log-test', version: '0' } } }),
    });
    await answer.text();
    expect(answer.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const mine = linesOf('trace-me-42');
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ msg: 'request completed', req: { method: 'POST', path: '/demo/mcp' }, res: { statusCode: 200 } });
    expect(typeof mine[0]?.responseTime).toBe('number');
    expect(accessLines().length).toBe(before + 1);

    // The authorize redirect carries state and the code challenge in its query: never logged.
    const authorize = gateway.logs.find((line) => line.msg === 'request completed' && (line.req as { path: string }).path === '/authorize');
    expect(authorize).toBeDefined();
    expect(gateway.logText()).not.toContain(flow.code);
    expect(gateway.logText()).not.toContain('code_challenge=');
    expect(gateway.logText()).not.toContain('secret-query');
    expect(gateway.logs.some((line) => line.msg === 'incoming request')).toBe(false);
    // Sign-in handles in paths are logged as their route.
    const paths = accessLines().map((line) => (line.req as { path: string }).path);
    expect(paths).toContain('/interaction/:uid');
    expect(paths).toContain('/signin/dev/:state');
    expect(paths.filter((path) => /^\/(interaction|signin)\//.test(path)).every((path) => path.includes(':'))).toBe(true);
  });

  it('logs 499 for a client that went away before the answer, with the id sent upstream', async () => {
    const flow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/slow/mcp` } });
    const token = String((await redeem(gateway, flow)).body.access_token);
    const url = new URL(`${gateway.origin}/slow/mcp`);
    await new Promise<void>((resolve) => {
      const req = request(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-request-id': 'gives-up-7' },
      });
      req.on('error', () => resolve());
      req.end('{"jsonrpc":"2.0","id":1,"method":"tools/list"}');
      // Gone before the server's answer (1.5 s).
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 300);
    });
    const deadline = Date.now() + 3000;
    while (linesOf('gives-up-7').length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(seenRequestIds).toContain('gives-up-7');
    const mine = linesOf('gives-up-7').filter((line) => line.msg === 'request completed');
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ req: { method: 'POST', path: '/slow/mcp' }, res: { statusCode: 499 } });
  });
});
