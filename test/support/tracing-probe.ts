/**
 * Run as its own process (`node test/support/tracing-probe.ts`) by the tracing test: which
 * OpenTelemetry SDK modules a gateway loads, first with tracing off, then with it on (the
 * positive control, so the check can fail). Module resolution is watched with Node's
 * synchronous hooks, which see every import of the process, static and dynamic. Prints one
 * JSON line: `{ off: [...], on: [...] }`, the SDK packages resolved by then.
 */
import { createServer } from 'node:http';
import module from 'node:module';

const SDK = /\/node_modules\/(@opentelemetry\/(?:sdk-[^/]+|exporter-[^/]+|otlp-[^/]+|resources|core))\//;
const loaded = new Set<string>();
module.registerHooks({
  resolve(specifier, context, next) {
    const result = next(specifier, context);
    const match = SDK.exec(result.url);
    if (match?.[1]) loaded.add(match[1]);
    return result;
  },
});

const { startTestGateway } = await import('./gateway.ts');

// A collector that takes everything, so the gateway's shutdown does not wait on retries.
const collector = createServer((req, res) => req.resume().on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}')));
await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
const address = collector.address();
const collectorUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/v1/traces`;

async function run(enabled: boolean): Promise<string[]> {
  const gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { domains: ['example.com'] } },
    services: { demo: { upstream: 'http://127.0.0.1:9/mcp', default: true } },
    tracing: { enabled, endpoint: collectorUrl },
  });
  const answer = await fetch(`${gateway.origin}/demo/mcp`, { method: 'POST', headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } });
  if (answer.status !== 401) throw new Error(`expected 401, got ${answer.status}`);
  await gateway.close();
  return [...loaded].sort();
}

const off = await run(false);
const on = await run(true);
collector.closeAllConnections();
collector.close();
process.stdout.write(`${JSON.stringify({ off, on })}\n`);
