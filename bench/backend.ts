/**
 * The MCP server stand-in behind every target: a bare `node:http` server, stateless, so the
 * proxy in front of it is what the benchmark measures (the MCP SDK's server would cost more
 * per request than the proxies do).
 *
 *   POST *         any body (drained) → 200 with a small JSON-RPC `tools/call` result
 *   GET  /mcp      SSE stream that stays idle: a comment at once, then one every 15 s
 *   GET  /ticks    SSE stream of TICK_COUNT events, TICK_INTERVAL_MS apart; each event's data is
 *                  process.hrtime.bigint() taken just before the write. That clock is
 *                  CLOCK_MONOTONIC, shared by every process on the machine, so the reader can
 *                  subtract it from its own hrtime at arrival.
 *
 * Run as a child: `node bench/backend.ts [port]`. Prints `{"port":N}` once listening, and
 * exits when its stdin closes (the parent went away, however it died).
 */
import { createServer, type ServerResponse } from 'node:http';

export const TICK_COUNT = 105;
export const TICK_INTERVAL_MS = 10;
const IDLE_COMMENT_MS = 15_000;

const RESULT = Buffer.from(JSON.stringify({
  jsonrpc: '2.0',
  id: 42,
  result: { content: [{ type: 'text', text: '{"matches":3,"took_ms":1}' }], isError: false },
}));

const JSON_HEADERS = { 'content-type': 'application/json', 'content-length': String(RESULT.length) };
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

let openStreams = 0;

function idleStream(res: ServerResponse): void {
  openStreams++;
  res.writeHead(200, SSE_HEADERS);
  res.write(': open\n\n');
  const timer = setInterval(() => res.write(': keep-alive\n\n'), IDLE_COMMENT_MS);
  res.once('close', () => {
    openStreams--;
    clearInterval(timer);
  });
}

function tickStream(res: ServerResponse): void {
  res.writeHead(200, SSE_HEADERS);
  res.write(': open\n\n');
  let sent = 0;
  const timer = setInterval(() => {
    sent++;
    res.write(`id: ${sent}\ndata: ${process.hrtime.bigint()}\n\n`);
    if (sent >= TICK_COUNT) {
      clearInterval(timer);
      res.end();
    }
  }, TICK_INTERVAL_MS);
  res.once('close', () => clearInterval(timer));
}

export function createBackend() {
  return createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    if (req.method === 'POST') {
      req.on('data', () => {});
      req.on('end', () => {
        res.writeHead(200, JSON_HEADERS);
        res.end(RESULT);
      });
      return;
    }
    const path = req.url?.split('?')[0];
    if (req.method === 'GET' && path === '/ticks') return tickStream(res);
    if (req.method === 'GET' && path === '/mcp') return idleStream(res);
    if (req.method === 'GET' && path === '/streams') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ open: openStreams }));
      return;
    }
    res.writeHead(404, { 'content-length': '0' });
    res.end();
  });
}

if (import.meta.main) {
  const server = createBackend();
  server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`);
  });
  process.stdin.resume();
  process.stdin.once('close', () => process.exit(0));
  process.stdin.once('end', () => process.exit(0));
}
