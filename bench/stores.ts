/**
 * `npm run bench:stores`: the gateway's store engines side by side, on 127.0.0.1.
 *
 *   node bench/stores.ts [--engines memory,sqlite,redis,postgres] [--tokens 400]
 *                        [--concurrency 20] [--duration 5]
 *
 * For each engine one gateway process (`node src/cli.ts serve`) runs on that store, and this
 * process measures, with `--concurrency` requests in flight:
 *   code exchange  POST /token grant_type=authorization_code, `--tokens` codes prepared beforehand
 *                  (each redemption: find, atomic consume, grant and account reads, token writes);
 *   refresh        POST /token grant_type=refresh_token for each of those tokens once (rotation:
 *                  find, successor claim, consume, writes);
 *   proxy          POST /svc/mcp with a bearer token for `--duration` seconds, the tokens of all
 *                  those grants in turn, to a backend answering at once: the bearer check with its
 *                  revocation check on (each grant's existence read from the store at most once a
 *                  second, and at once after a revocation event).
 * Redis and Postgres come from REDIS_URL and DATABASE_URL (defaults as in the tests); an engine
 * whose server does not answer is left out with a note. Results: a table on stdout and
 * bench/results/stores.json. Everything started here is stopped at the end and on Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { HttpSession } from '../test/support/http-session.ts';
import { redeem, refresh, registerClient, runCodeFlow, type CodeFlow, type FlowGateway } from '../test/support/oauth-flow.ts';
import { DATABASE_URL, postgresNamespace, REDIS_URL, redisNamespace } from '../test/support/stores.ts';
import { percentile } from './load.ts';

const ROOT = resolve(import.meta.dirname, '..');
const ENGINES = ['memory', 'sqlite', 'redis', 'postgres'] as const;
type Engine = typeof ENGINES[number];

const { values: args } = parseArgs({
  options: {
    engines: { type: 'string', default: ENGINES.join(',') },
    tokens: { type: 'string', default: '400' },
    concurrency: { type: 'string', default: '20' },
    duration: { type: 'string', default: '5' },
  },
});
const chosen = String(args.engines).split(',').map((name) => name.trim()) as Engine[];
for (const name of chosen) if (!ENGINES.includes(name)) throw new Error(`--engines takes ${ENGINES.join(', ')}; not ${name}`);
const TOKENS = Math.max(10, Math.min(5000, Number(args.tokens)));
const CONCURRENCY = Math.max(1, Math.min(200, Number(args.concurrency)));
const DURATION_S = Math.max(1, Math.min(60, Number(args.duration)));

const children = new Set<ChildProcess>();
const cleanups: Array<() => Promise<void>> = [];
const stopEverything = async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const cleanup of cleanups.splice(0)) await cleanup().catch(() => undefined);
};
process.once('SIGINT', () => void stopEverything().then(() => process.exit(130)));
process.once('SIGTERM', () => void stopEverything().then(() => process.exit(143)));

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/** The MCP server behind the gateway: answers every POST at once, so the gateway is measured. */
async function startBackend(): Promise<{ url: string; server: Server }> {
  const server = createHttpServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"jsonrpc":"2.0","id":1,"result":{}}');
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/mcp`, server };
}

/** Whether something accepts connections at the URL's host and port (within a second). */
function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((done) => {
    const probe = connect(Number(port), hostname);
    probe.setTimeout(1000, () => {
      probe.destroy();
      done(false);
    });
    probe.once('error', () => done(false));
    probe.once('connect', () => {
      probe.destroy();
      done(true);
    });
  });
}

async function storeConfig(engine: Engine, dir: string): Promise<Record<string, unknown> | undefined> {
  switch (engine) {
    case 'memory': return { type: 'memory' };
    case 'sqlite': return { type: 'sqlite', path: join(dir, 'gatehouse.db') };
    case 'redis': {
      if (!(await reachable(REDIS_URL))) return undefined;
      const namespace = redisNamespace('bench');
      cleanups.push(() => namespace.cleanup());
      return { type: 'redis', url: REDIS_URL, key_prefix: namespace.prefix() };
    }
    case 'postgres': {
      if (!(await reachable(DATABASE_URL))) return undefined;
      const namespace = postgresNamespace('bench');
      cleanups.push(() => namespace.cleanup());
      return { type: 'postgres', url: DATABASE_URL, schema: namespace.schema() };
    }
  }
}

async function startGateway(store: Record<string, unknown>, backend: string, dir: string): Promise<FlowGateway & { child: ChildProcess }> {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const configPath = join(dir, `gatehouse-${port}.yaml`);
  writeFileSync(configPath, JSON.stringify({
    public_url: origin,
    listen: { host: '127.0.0.1', port },
    store,
    secrets: { encryption_key: randomBytes(32).toString('base64') },
    log: { level: 'warn' },
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: { svc: { upstream: backend, scopes: ['tools.read'] } },
  }));
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GATEHOUSE_')));
  const child = spawn(process.execPath, [join(ROOT, 'src/cli.ts'), 'serve', '--config', configPath], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const deadline = Date.now() + 15_000;
  while (!(await fetch(`${origin}/ready`).then((response) => response.ok, () => false))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the gateway on ${String(store.type)} did not become ready`);
    await sleep(50);
  }
  return { issuer: `${origin}/`, listenUrl: origin, child };
}

interface Measured {
  requests: number;
  errors: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** Runs `count` calls (or, with `untilMs`, calls until then) with `CONCURRENCY` in flight. */
async function measure(call: (i: number) => Promise<boolean>, count: number, untilMs?: number): Promise<Measured> {
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  const started = performance.now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (untilMs === undefined ? i >= count : performance.now() - started >= untilMs) return;
      const t = performance.now();
      const ok = await call(i).catch(() => false);
      latencies.push(performance.now() - t);
      if (!ok) errors++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    errors,
    perSecond: Math.round(latencies.length / elapsed),
    p50Ms: Math.round(percentile(latencies, 50) * 10) / 10,
    p99Ms: Math.round(percentile(latencies, 99) * 10) / 10,
  };
}

async function benchEngine(engine: Engine, backend: string): Promise<Record<string, Measured> | string> {
  const dir = mkdtempSync(join(tmpdir(), `gatehouse-bench-${engine}-`));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const store = await storeConfig(engine, dir);
  if (!store) return `not measured: ${engine === 'redis' ? REDIS_URL : DATABASE_URL} did not answer`;
  const gateway = await startGateway(store, backend, dir);
  try {
    // Codes for one client and one signed-in person (consent given once), prepared beforehand.
    const client = await registerClient(gateway, ['http://127.0.0.1:53100/callback']);
    const session = new HttpSession();
    // The first flow signs in and consents; the others find both remembered.
    const flows: CodeFlow[] = [await runCodeFlow(gateway, { client, session })];
    for (let i = 1; i < TOKENS; i += 10) {
      flows.push(...await Promise.all(Array.from({ length: Math.min(10, TOKENS - i) }, () => runCodeFlow(gateway, { client, session }))));
    }
    const failed = flows.find((flow) => !flow.code);
    if (failed) throw new Error(`preparing the codes failed: ${failed.result.kind === 'page' ? failed.result.html.slice(0, 300) : failed.result.url.href}`);

    const refreshTokens: string[] = [];
    const accessTokens: string[] = [];
    const exchange = await measure(async (i) => {
      const answer = await redeem(gateway, flows[i]!);
      refreshTokens[i] = String(answer.body.refresh_token);
      accessTokens[i] = String(answer.body.access_token);
      return answer.status === 200;
    }, flows.length);
    const refreshed = await measure(async (i) => (await refresh(gateway, client.client_id, refreshTokens[i]!)).status === 200, refreshTokens.length);

    const pool = new Pool(gateway.listenUrl, { connections: CONCURRENCY, pipelining: 1 });
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });
    const proxy = await measure(async (i) => {
      const response = await pool.request({
        method: 'POST',
        path: '/svc/mcp',
        headers: {
          authorization: `Bearer ${accessTokens[i % accessTokens.length]}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body,
      });
      await response.body.dump();
      return response.statusCode === 200;
    }, 0, DURATION_S * 1000);
    await pool.close();
    return { 'code exchange': exchange, refresh: refreshed, proxy };
  } finally {
    gateway.child.kill('SIGTERM');
    await new Promise((done) => (gateway.child.exitCode !== null ? done(undefined) : gateway.child.once('exit', done)));
  }
}

async function main(): Promise<void> {
  const backend = await startBackend();
  cleanups.push(() => new Promise((done) => backend.server.close(() => done())));
  const results: Record<string, Record<string, Measured> | string> = {};
  for (const engine of chosen) {
    process.stderr.write(`${engine}…\n`);
    results[engine] = await benchEngine(engine, backend.url);
  }

  const measuredEngines = chosen.filter((engine) => typeof results[engine] !== 'string');
  const lines = [
    `Store engines, ${TOKENS} grants, ${CONCURRENCY} requests in flight, proxy for ${DURATION_S} s; ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}`,
    '',
    `| | ${measuredEngines.join(' | ')} |`,
    `| --- |${measuredEngines.map(() => ' --- |').join('')}`,
  ];
  for (const phase of ['code exchange', 'refresh', 'proxy']) {
    const cell = (engine: Engine) => {
      const m = (results[engine] as Record<string, Measured>)[phase]!;
      return `${m.perSecond} req/s (p50 ${m.p50Ms} ms, p99 ${m.p99Ms} ms${m.errors ? `, ${m.errors} errors` : ''})`;
    };
    lines.push(`| ${phase} | ${measuredEngines.map(cell).join(' | ')} |`);
  }
  for (const engine of chosen) if (typeof results[engine] === 'string') lines.push('', `${engine}: ${results[engine]}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'stores.json'), `${JSON.stringify({ at: new Date().toISOString(), tokens: TOKENS, concurrency: CONCURRENCY, durationSeconds: DURATION_S, results }, null, 2)}\n`);
}

main().then(stopEverything, async (error: unknown) => {
  await stopEverything();
  process.stderr.write(`bench:stores failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
