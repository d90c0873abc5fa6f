/**
 * The floor for a reverse proxy written the way the gateway is (node:http in, undici out,
 * bodies streamed back) but doing nothing else: no routing framework, no token check, no
 * policy, no logging. The benchmark runs it beside the gateway so the report can tell the cost
 * of Node's HTTP stack itself from the cost of what the gateway adds on top.
 *
 * Run as a child: `node bench/node-proxy.ts BACKEND_ORIGIN`. Prints `{"port":N}` once
 * listening, and exits when its stdin closes.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { Agent, request } from 'undici';

/** RFC 9110 §7.6.1: hop-by-hop headers are never forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host']);
const RESPONSE_HEADERS = ['content-type', 'content-length', 'cache-control'];

function requestHeaders(incoming: IncomingHttpHeaders): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

export function createNodeProxy(backend: string) {
  // No cap on connections: every open stream needs its own upstream connection.
  const agent = new Agent({ keepAliveTimeout: 30_000, pipelining: 1 });
  return createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = chunks.length === 0 ? null : Buffer.concat(chunks);
      const controller = new AbortController();
      res.once('close', () => {
        if (!res.writableFinished) controller.abort();
      });
      request(`${backend}${req.url ?? '/'}`, {
        dispatcher: agent,
        method: (req.method ?? 'GET') as 'POST',
        headers: requestHeaders(req.headers),
        body,
        signal: controller.signal,
        bodyTimeout: 0,
      }).then((upstream) => {
        const headers: Record<string, string> = {};
        for (const name of RESPONSE_HEADERS) {
          const value = upstream.headers[name];
          if (typeof value === 'string') headers[name] = value;
        }
        res.writeHead(upstream.statusCode, headers);
        if (headers['content-type']?.startsWith('text/event-stream')) res.flushHeaders();
        upstream.body.on('error', () => res.destroy());
        upstream.body.pipe(res);
      }, () => {
        if (res.headersSent) res.destroy();
        else res.writeHead(502, { 'content-length': '0' }).end();
      });
    });
  });
}

if (import.meta.main) {
  const backend = process.argv[2];
  if (!backend) {
    process.stderr.write('usage: node bench/node-proxy.ts BACKEND_ORIGIN\n');
    process.exit(2);
  }
  const server = createNodeProxy(backend);
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`);
  });
  process.stdin.resume();
  process.stdin.once('close', () => process.exit(0));
  process.stdin.once('end', () => process.exit(0));
}
