/**
 * A small stdio MCP server for the stdio bridge's lifecycle tests, run by the gateway as
 * `node test/support/stdio-test-server.ts` (Node runs the TypeScript as is). It speaks the
 * stdio transport by hand (newline-delimited JSON-RPC) so that it starts in a few tens of
 * milliseconds: the tests start many of them. The MCP side of the bridge is tested with the
 * SDK's reference server, server-everything.
 *
 *   whoami   its pid, argv, and the environment variables the test asks about
 *   crash    writes to stderr and exits in the middle of the request
 *   helper   starts a long-lived child of its own (a helper in its process group) and
 *            answers with its pid, for the tests that check nothing outlives the gateway
 *   slow     answers after 1.5 s (a call under way when the gateway shuts down)
 *
 * With `--noise`, it prints a banner to stdout first (wrong, but real servers do it).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

interface Request {
  id?: string | number;
  method?: string;
  params?: { name?: string; arguments?: { names?: string[] }; protocolVersion?: string };
}

function send(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ jsonrpc: '2.0', ...message })}\n`);
}

function text(value: string) {
  return { content: [{ type: 'text', text: value }] };
}

const tools = ['whoami', 'crash', 'helper', 'slow'].map((name) => ({ name, inputSchema: { type: 'object', properties: {} } }));

async function call(name: string | undefined, args: { names?: string[] } = {}) {
  if (name === 'whoami') {
    const env = Object.fromEntries((args.names ?? []).map((key) => [key, process.env[key] ?? null]));
    return text(JSON.stringify({ pid: process.pid, cwd: process.cwd(), argv: process.argv.slice(2), env }));
  }
  if (name === 'crash') {
    process.stderr.write('fatal: the test server crashes on purpose\n');
    // Let stderr drain, then die without answering.
    await new Promise((resolve) => setTimeout(resolve, 20));
    process.exit(3);
  }
  if (name === 'helper') {
    const helper = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    return text(String(helper.pid));
  }
  if (name === 'slow') {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    return text('slow done');
  }
  return { isError: true, ...text(`unknown tool ${name}`) };
}

if (process.argv.includes('--noise')) process.stdout.write('stdio-test server says hello on stdout\n');

createInterface({ input: process.stdin }).on('line', async (line) => {
  const request = JSON.parse(line) as Request;
  if (request.id === undefined) return; // notifications need no answer
  switch (request.method) {
    case 'initialize':
      return send({
        id: request.id,
        result: { protocolVersion: request.params?.protocolVersion ?? '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'stdio-test', version: '1.0.0' } },
      });
    case 'ping':
      return send({ id: request.id, result: {} });
    case 'tools/list':
      return send({ id: request.id, result: { tools } });
    case 'tools/call':
      return send({ id: request.id, result: await call(request.params?.name, request.params?.arguments) });
    default:
      return send({ id: request.id, error: { code: -32601, message: `no method ${request.method}` } });
  }
}).on('close', () => process.exit(0));
process.stderr.write('stdio-test server ready\n');
