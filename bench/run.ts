/**
 * `npm run bench`: the gateway against direct-to-backend, nginx as a plain reverse proxy and a
 * bare Node proxy (bench/node-proxy.ts), side by side in one run on 127.0.0.1
 * (docs/performance.md explains every figure).
 *
 *   node bench/run.ts [--duration 10] [--warmup 2] [--connections 50] [--rate 1000]
 *                     [--sse-streams 1000] [--starts 5] [--profile] [--no-pin]
 *                     [--skip memory,throughput,latency,first-byte,start] [--gateway PATH/cli.ts]
 *
 * --gateway runs another copy of the gateway (a patched checkout, say) in place of src/cli.ts.
 *
 * Every loop is bounded in count and time, and every process started here is stopped at the
 * end, on failure, on Ctrl-C and on SIGTERM.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { createServer } from 'node:net';
import { availableParallelism, cpus, loadavg, release, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { redeem, runCodeFlow, type FlowGateway } from '../test/support/oauth-flow.ts';
import { TICK_COUNT, TICK_INTERVAL_MS } from './backend.ts';
import { percentile, type LoadResult, type LoadSpec } from './load.ts';
import { formatProfile, summariseProfile, type ProfileSummary } from './profile.ts';
import {
  childrenOf, commandLineOf, cpuBusySecondsOf, cpuSecondsOf, findExecutable, isRunning, killAllNow, launch, memoryOf, openFilesLimit, output,
  quick, stop, stopAll, type Launched,
} from './processes.ts';

const ROOT = resolve(import.meta.dirname, '..');
const RESULTS_DIR = join(ROOT, 'bench', 'results');
const NODE = process.execPath;
/** `node` is bench/node-proxy.ts: node:http + undici and nothing else, the floor for a Node proxy. */
const TARGETS = ['direct', 'nginx', 'node', 'gateway'] as const;
type Target = typeof TARGETS[number];

// ---------------------------------------------------------------------------------------------
// Options

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '50' },
    rate: { type: 'string', default: '1000' },
    'sse-streams': { type: 'string', default: '1000' },
    starts: { type: 'string', default: '5' },
    profile: { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
    skip: { type: 'string', default: '' },
    gateway: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*\n?/, '').replace(/^ \* ?/gm, ''));
  process.exit(0);
}
const bounded = (name: string, value: string | undefined, min: number, max: number): number => {
  const number = Number(value);
  if (!Number.isFinite(number) || number < min || number > max) {
    process.stderr.write(`--${name} must be a number from ${min} to ${max}\n`);
    process.exit(2);
  }
  return number;
};
const DURATION = bounded('duration', args.duration, 1, 60);
const WARMUP = bounded('warmup', args.warmup, 0, 30);
const CONNECTIONS = bounded('connections', args.connections, 1, 1000);
const RATE = bounded('rate', args.rate, 10, 20_000);
const SSE_STREAMS = bounded('sse-streams', args['sse-streams'], 1, 20_000);
const STARTS = bounded('starts', args.starts, 1, 20);
/** The gateway's entry point: this checkout's src/cli.ts unless --gateway names another. */
const GATEWAY_CLI = resolve(args.gateway ?? join(ROOT, 'src', 'cli.ts'));
const PHASES = ['memory', 'throughput', 'latency', 'first-byte', 'start'] as const;
const SKIP = new Set(String(args.skip).split(',').map((phase) => phase.trim()).filter(Boolean));
for (const phase of SKIP) {
  if (!(PHASES as readonly string[]).includes(phase)) {
    process.stderr.write(`--skip takes a comma-separated list of ${PHASES.join(', ')}; not ${phase}\n`);
    process.exit(2);
  }
}
const runs = (phase: typeof PHASES[number]) => !SKIP.has(phase);

// ---------------------------------------------------------------------------------------------
// Output helpers

const notes: string[] = [];
function log(line: string): void {
  process.stdout.write(`${line}\n`);
}
function warn(line: string): void {
  notes.push(line);
  process.stdout.write(`\n  !!! ${line}\n\n`);
}
/** Share of the server CPU taken by other processes above which a run is flagged as disturbed. */
const DISTURBED = 0.1;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values: number[]) => percentile(Float64Array.from(values).sort(), 50);
const round = (value: number, digits = 0) => Math.round(value * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------------------------------------
// Clean-up on every way out

let tmp: string | undefined;
let interrupted = false;
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopAll();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  })();
  return cleaning;
}
process.on('exit', () => {
  killAllNow();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping every process the benchmark started…\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// Machine, tools, pinning

interface Tools {
  nginx: string | undefined;
  nginxVersion: string | undefined;
  wrk: string | undefined;
  wrkVersion: string | undefined;
  taskset: boolean;
}

/** Finds `binary`, installing Debian's `pkg` with apt-get when missing and running as root. */
function ensureTool(binary: string, pkg: string, skipped: string): string | undefined {
  const found = findExecutable(binary);
  if (found) return found;
  if (process.getuid?.() !== 0 || !findExecutable('apt-get')) {
    warn(`${binary} is not installed and this is not root: install it with \`sudo apt-get install ${pkg}\`. ${skipped}`);
    return undefined;
  }
  log(`  ${binary} is missing: apt-get install -y ${pkg}`);
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], {
    stdio: ['ignore', 'inherit', 'inherit'], timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 300_000 });
    install();
  }
  const after = findExecutable(binary);
  if (!after) warn(`apt-get could not install ${pkg}. ${skipped}`);
  return after;
}

function detectTools(): Tools {
  const nginx = ensureTool('nginx', 'nginx', 'nginx figures are SKIPPED in this run.');
  const wrk = ensureTool('wrk', 'wrk', 'Saturation throughput falls back to the Node closed-loop generator (bench/load.ts), which is itself slower than wrk: figures are lower bounds.');
  const wrkRun = wrk ? spawnSync(wrk, ['-v'], { encoding: 'utf8', timeout: 5000 }) : undefined;
  return {
    nginx,
    nginxVersion: nginx ? quick(nginx, ['-v'])?.replace(/^nginx version:\s*/, '') : undefined,
    wrk,
    wrkVersion: wrkRun ? /wrk\s+(\S+)/.exec(`${wrkRun.stdout}${wrkRun.stderr}`)?.[1] : undefined,
    taskset: findExecutable('taskset') !== undefined,
  };
}

interface Pinning { load: string | undefined; servers: string | undefined; description: string }

// ---------------------------------------------------------------------------------------------
// CPU accounting: on a shared machine the wall-clock figures move with whatever else runs, so
// each run also records the CPU time the servers spent per request (from /proc/<pid>/stat), which
// does not, and how much of the server CPU other processes took meanwhile.

interface CpuSnapshot { at: number; proxy: number; backend: number; serverCpu: number }

function cpuSnapshot(proxyPid: number | undefined, backendPid: number, pinning: Pinning): CpuSnapshot {
  return {
    at: performance.now(),
    proxy: proxyPid === undefined ? 0 : cpuSecondsOf(proxyPid),
    backend: cpuSecondsOf(backendPid),
    serverCpu: pinning.servers === undefined ? Number.NaN : cpuBusySecondsOf(Number(pinning.servers)),
  };
}

interface CpuUse {
  /** CPU time of the proxy process (nginx worker, gateway) per request, µs; 0 for direct. */
  proxyUsPerRequest: number;
  backendUsPerRequest: number;
  /** Requests per second one core could serve if it ran only backend and proxy: 1e6 / (proxy + backend µs). */
  cpuBoundRequestsPerSecond: number;
  /** Share of the server CPU's time used by processes other than backend and proxy (NaN when not pinned). */
  foreignShareOfServerCpu: number;
}

function cpuUse(before: CpuSnapshot, after: CpuSnapshot, requests: number): CpuUse {
  const proxy = ((after.proxy - before.proxy) * 1e6) / requests;
  const backend = ((after.backend - before.backend) * 1e6) / requests;
  const wall = (after.at - before.at) / 1000;
  const foreign = (after.serverCpu - before.serverCpu - (after.proxy - before.proxy) - (after.backend - before.backend)) / wall;
  return {
    proxyUsPerRequest: round(proxy, 1),
    backendUsPerRequest: round(backend, 1),
    cpuBoundRequestsPerSecond: round(1e6 / (proxy + backend)),
    foreignShareOfServerCpu: round(Math.max(0, foreign), 3),
  };
}

function choosePinning(tools: Tools): Pinning {
  const cores = availableParallelism();
  if (args['no-pin']) return { load: undefined, servers: undefined, description: 'not pinned (--no-pin)' };
  if (!tools.taskset) return { load: undefined, servers: undefined, description: 'not pinned: taskset is missing (Debian package util-linux)' };
  if (cores < 2) return { load: undefined, servers: undefined, description: `not pinned: only ${cores} CPU` };
  // This process, and every load generator it starts, on CPU 0; backend, nginx and gateway on CPU 1.
  const pinned = spawnSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { encoding: 'utf8' });
  if (pinned.status !== 0) return { load: undefined, servers: undefined, description: `not pinned: taskset failed (${pinned.stderr.trim()})` };
  return { load: '0', servers: '1', description: 'load generators (wrk, Node generator, SSE clients, this script) on CPU 0; backend, nginx and gateway on CPU 1 (taskset)' };
}

function machine(tools: Tools) {
  return {
    nproc: availableParallelism(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    kernel: release(),
    nginx: tools.nginxVersion ?? null,
    wrk: tools.wrkVersion ?? null,
    loadAverageAtStart: loadavg().map((value) => round(value, 2)),
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

interface Reply { status: number; headers: IncomingMessage['headers']; body: string }

function httpCall(url: string, init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolveReply, reject) => {
    const req = httpRequest(url, { method: init.method ?? 'GET', headers: init.headers, agent: false, timeout: init.timeoutMs ?? 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolveReply({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within ${init.timeoutMs ?? 5000} ms`)));
    req.on('error', reject);
    req.end(init.body);
  });
}

/** Polls until `url` answers 200; returns ms from `since`, or throws after `timeoutMs`. */
async function waitFor200(url: string, since: number, timeoutMs: number, proc: Launched | undefined, intervalMs = 10): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (proc && !isRunning(proc)) throw new Error(`${proc.name} exited before it was ready:\n${proc.stderrTail()}`);
    const status = await httpCall(url, { timeoutMs: 1000 }).then((reply) => reply.status, () => 0);
    if (status === 200) return performance.now() - since;
    await sleep(intervalMs);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms${proc ? `:\n${proc.stderrTail()}` : ''}`);
}

// ---------------------------------------------------------------------------------------------
// The servers

interface Servers {
  /** The process doing the proxying for each target (the nginx worker, the gateway). */
  proxyPid: Record<Target, number | undefined>;
  backend: Launched;
  backendUrl: string;
  nodeProxyUrl: string;
  nginx: Launched | undefined;
  nginxUrl: string | undefined;
  gateway: Launched;
  gatewayUrl: string;
  gatewayConfig: string;
}

/** Starts one of the bench's own Node servers, which print `{"port":N}` once listening. */
async function startNodeServer(name: string, script: string, args: string[], pinning: Pinning): Promise<{ proc: Launched; url: string }> {
  const proc = launch(name, NODE, [join(ROOT, 'bench', script), ...args], { cpu: pinning.servers, raiseFdLimit: true });
  const port = await new Promise<number>((resolvePort, reject) => {
    let buffer = '';
    const timer = setTimeout(() => reject(new Error(`the ${name} did not start within 10 s:\n${proc.stderrTail()}`)), 10_000);
    proc.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk;
      const line = /\{"port":(\d+)\}/.exec(buffer);
      if (line) {
        clearTimeout(timer);
        resolvePort(Number(line[1]));
      }
    });
    void proc.exited.then((code) => reject(new Error(`the ${name} exited (${code}):\n${proc.stderrTail()}`)));
  });
  return { proc, url: `http://127.0.0.1:${port}` };
}

function nginxConfig(dir: string, port: number, backendPort: number): string {
  const workerConnections = Math.max(4096, SSE_STREAMS * 2 + 256);
  return `# Written by bench/run.ts: nginx as a plain reverse proxy, its own pid and log paths.
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${workerConnections}; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Streams (SSE) must pass event by event, as the gateway forwards them.
      proxy_buffering off;
      proxy_read_timeout 1h;
    }
  }
}
`;
}

async function startNginx(binary: string, pinning: Pinning, backendUrl: string): Promise<{ proc: Launched; url: string }> {
  const dir = join(tmp!, 'nginx');
  mkdirSync(dir, { recursive: true });
  // Workers run as an unprivileged user when the master is root.
  chmodSync(tmp!, 0o755);
  chmodSync(dir, 0o755);
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, port, Number(new URL(backendUrl).port)));
  const test = spawnSync(binary, ['-t', '-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { encoding: 'utf8', timeout: 10_000 });
  if (test.status !== 0) throw new Error(`nginx -t failed:\n${test.stderr}`);
  const proc = launch('nginx', binary, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { cpu: pinning.servers, raiseFdLimit: true });
  const url = `http://127.0.0.1:${port}`;
  await waitFor200(`${url}/streams`, performance.now(), 10_000, proc);
  return { proc, url };
}

function gatewayYaml(port: number, backendUrl: string, storePath: string, key: string): string {
  return `# Written by bench/run.ts
public_url: http://127.0.0.1:${port}
listen: { host: 127.0.0.1, port: ${port} }
store: { type: sqlite, path: ${JSON.stringify(storePath)} }
secrets: { encryption_key: ${JSON.stringify(key)} }
identity_providers: [{ id: dev, type: dev }]
access: { allow: { users: ["*"] } }
services:
  bench: { upstream: ${backendUrl}/mcp, scopes: [tools.call] }
  ticks: { upstream: ${backendUrl}/ticks, scopes: [tools.call] }
log: { level: warn }
`;
}

/** The environment without GATEHOUSE_* overrides, so the YAML file is the whole configuration. */
function gatewayEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GATEHOUSE_')));
}

/**
 * Node's flags for the gateway, as deploy/ runs it (Dockerfile, systemd unit): a larger young
 * generation, fewer scavenges and less promoted garbage (docs/performance.md, "Young generation").
 */
const GATEWAY_NODE_FLAGS = ['--max-semi-space-size=32'];

function launchGateway(name: string, configPath: string, pinning: Pinning, logPath: string, nodeFlags: string[] = []): Launched {
  const logFd = openSync(logPath, 'a');
  const proc = launch(name, NODE, [...GATEWAY_NODE_FLAGS, ...nodeFlags, GATEWAY_CLI, 'serve', '--config', configPath], {
    cpu: pinning.servers, raiseFdLimit: true, env: gatewayEnv(), cwd: ROOT, stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  return proc;
}

async function startServers(tools: Tools, pinning: Pinning): Promise<Servers> {
  const backend = await startNodeServer('backend', 'backend.ts', [], pinning);
  log(`  backend  ${backend.url}  (bench/backend.ts: node:http, pid ${backend.proc.pid})`);
  const nodeProxy = await startNodeServer('node proxy', 'node-proxy.ts', [backend.url], pinning);
  log(`  node     ${nodeProxy.url}  (bench/node-proxy.ts: node:http + undici, no auth, pid ${nodeProxy.proc.pid})`);
  let nginx: { proc: Launched; url: string } | undefined;
  if (tools.nginx) {
    nginx = await startNginx(tools.nginx, pinning, backend.url);
    log(`  nginx    ${nginx.url}  (${tools.nginxVersion}, worker_processes 1, pid ${nginx.proc.pid})`);
  }
  const port = await freePort();
  const gatewayConfig = join(tmp!, 'gateway.yaml');
  writeFileSync(gatewayConfig, gatewayYaml(port, backend.url, join(tmp!, 'gateway.db'), randomBytes(32).toString('base64')));
  const gateway = launchGateway('gateway', gatewayConfig, pinning, join(tmp!, 'gateway.log'));
  const gatewayUrl = `http://127.0.0.1:${port}`;
  await waitFor200(`${gatewayUrl}/ready`, performance.now(), 30_000, gateway, 20);
  if (!commandLineOf(gateway.pid).includes(`${GATEWAY_CLI} serve`)) throw new Error(`pid ${gateway.pid} is not the gateway: ${commandLineOf(gateway.pid)}`);
  log(`  gateway  ${gatewayUrl}  (node ${GATEWAY_NODE_FLAGS.join(' ')} ${relative(ROOT, GATEWAY_CLI)} serve, sqlite store, pid ${gateway.pid})`);
  const worker = nginx && nginxWorker(nginx.proc);
  if (nginx && worker === undefined) throw new Error('nginx is running but its worker process was not found');
  return {
    proxyPid: { direct: undefined, nginx: worker, node: nodeProxy.proc.pid, gateway: gateway.pid },
    nodeProxyUrl: nodeProxy.url,
    backend: backend.proc, backendUrl: backend.url, nginx: nginx?.proc, nginxUrl: nginx?.url, gateway, gatewayUrl, gatewayConfig,
  };
}

// ---------------------------------------------------------------------------------------------
// A real access token: DCR of a public client, PKCE, the dev sign-in form, consent, /token.

async function accessToken(gatewayUrl: string, service: string): Promise<string> {
  const gateway: FlowGateway = { issuer: `${gatewayUrl}/`, listenUrl: gatewayUrl };
  const resource = `${gatewayUrl}/${service}/mcp`;
  const flow = await runCodeFlow(gateway, { params: { resource, scope: 'tools.call' }, user: { email: 'bench@example.com', name: 'Bench' } });
  if (!flow.code) throw new Error(`the authorization flow for ${resource} ended without a code: ${JSON.stringify(flow.result).slice(0, 500)}`);
  const tokens = await redeem(gateway, flow, { resource });
  const token = tokens.body.access_token;
  if (tokens.status !== 200 || typeof token !== 'string') throw new Error(`/token answered ${tokens.status}: ${JSON.stringify(tokens.body)}`);
  return token;
}

// ---------------------------------------------------------------------------------------------
// The request

/** A ~300-byte MCP tools/call, as a client sends it. */
const BODY = JSON.stringify({
  jsonrpc: '2.0',
  id: 42,
  method: 'tools/call',
  params: {
    name: 'search_documents',
    arguments: { query: 'quarterly revenue by region for the last two fiscal years', limit: 10, filters: { status: 'published', language: 'en', team: 'finance' } },
    _meta: { progressToken: 'bench-0001' },
  },
});

interface Endpoints { post: Record<Target, string | undefined>; idle: Record<Target, string | undefined>; ticks: Record<Target, string | undefined> }

function endpoints(servers: Servers): Endpoints {
  return {
    post: { direct: `${servers.backendUrl}/mcp`, nginx: servers.nginxUrl && `${servers.nginxUrl}/mcp`, node: `${servers.nodeProxyUrl}/mcp`, gateway: `${servers.gatewayUrl}/bench/mcp` },
    idle: { direct: `${servers.backendUrl}/mcp`, nginx: servers.nginxUrl && `${servers.nginxUrl}/mcp`, node: `${servers.nodeProxyUrl}/mcp`, gateway: `${servers.gatewayUrl}/bench/mcp` },
    ticks: { direct: `${servers.backendUrl}/ticks`, nginx: servers.nginxUrl && `${servers.nginxUrl}/ticks`, node: `${servers.nodeProxyUrl}/ticks`, gateway: `${servers.gatewayUrl}/ticks/mcp` },
  };
}

function postHeaders(token: string): Record<string, string> {
  return {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-06-18',
    authorization: `Bearer ${token}`,
  };
}

/** Every target answers the POST with the backend's result; the gateway refuses it without a token. */
async function sanityCheck(points: Endpoints, token: string): Promise<void> {
  for (const target of TARGETS) {
    const url = points.post[target];
    if (!url) continue;
    const reply = await httpCall(url, { method: 'POST', headers: postHeaders(token), body: BODY });
    if (reply.status !== 200 || !reply.body.includes('"result"')) throw new Error(`${target}: POST ${url} answered ${reply.status}: ${reply.body.slice(0, 300)}`);
  }
  const { authorization: _, ...anonymous } = postHeaders(token);
  const refused = await httpCall(points.post.gateway!, { method: 'POST', headers: anonymous, body: BODY });
  if (refused.status !== 401) throw new Error(`the gateway answered ${refused.status} to a request without a token, not 401`);
}

// ---------------------------------------------------------------------------------------------
// a. Saturation throughput

interface Throughput { tool: string; requestsPerSecond: number; requests: number; seconds: number; errors: number; non2xx: number; latencyP50Us: number; latencyP99Us: number; cpu?: CpuUse }

function wrkScript(token: string): string {
  const path = join(tmp!, 'post.lua');
  const headers = Object.entries(postHeaders(token)).map(([name, value]) => `wrk.headers[${JSON.stringify(name)}] = ${JSON.stringify(value)}`).join('\n');
  writeFileSync(path, `-- Written by bench/run.ts: the ~300-byte tools/call POST.
wrk.method = "POST"
wrk.body = [==[${BODY}]==]
${headers}

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nBENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`);
  return path;
}

async function runWrk(wrk: string, script: string, url: string, seconds: number, pinning: Pinning): Promise<Throughput> {
  const proc = launch('wrk', wrk, ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--timeout', '5s', '-s', script, url], { cpu: pinning.load });
  const { stdout, code } = await output(proc, (seconds + 20) * 1000);
  const line = /BENCH_JSON (\{.*\})/.exec(stdout)?.[1];
  if (code !== 0 || !line) throw new Error(`wrk failed (${code}): ${stdout}\n${proc.stderrTail()}`);
  const raw = JSON.parse(line) as Record<string, number>;
  const seconds_ = raw.duration_us! / 1e6;
  return {
    tool: 'wrk',
    requestsPerSecond: raw.requests! / seconds_,
    requests: raw.requests!,
    seconds: seconds_,
    errors: raw.connect! + raw.read! + raw.write! + raw.timeout!,
    non2xx: raw.status!,
    latencyP50Us: raw.p50_us!,
    latencyP99Us: raw.p99_us!,
  };
}

async function runNodeLoad(spec: LoadSpec, pinning: Pinning): Promise<LoadResult> {
  const proc = launch('load generator', NODE, [join(ROOT, 'bench', 'load.ts'), JSON.stringify(spec)], { cpu: pinning.load, raiseFdLimit: true });
  const { stdout, code } = await output(proc, (spec.durationSeconds + spec.warmupSeconds + 60) * 1000);
  if (code !== 0) throw new Error(`the load generator failed (${code}): ${proc.stderrTail()}`);
  return JSON.parse(stdout.trim().split('\n').pop()!) as LoadResult;
}

async function measureThroughput(tools: Tools, servers: Servers, points: Endpoints, token: string, pinning: Pinning): Promise<Partial<Record<Target, Throughput>>> {
  const results: Partial<Record<Target, Throughput>> = {};
  const script = tools.wrk ? wrkScript(token) : undefined;
  for (const target of TARGETS) {
    const url = points.post[target];
    if (!url) continue;
    let result: Throughput;
    let before: CpuSnapshot;
    if (tools.wrk && script) {
      if (WARMUP > 0) await runWrk(tools.wrk, script, url, WARMUP, pinning);
      before = cpuSnapshot(servers.proxyPid[target], servers.backend.pid, pinning);
      result = await runWrk(tools.wrk, script, url, DURATION, pinning);
    } else {
      // The Node generator warms up inside its own run, so the CPU window includes the warm-up.
      before = cpuSnapshot(servers.proxyPid[target], servers.backend.pid, pinning);
      const load = await runNodeLoad({ mode: 'closed', url, headers: postHeaders(token), body: BODY, connections: CONNECTIONS, durationSeconds: DURATION, warmupSeconds: WARMUP }, pinning);
      result = { tool: 'node closed-loop (bench/load.ts)', requestsPerSecond: load.requestsPerSecond, requests: load.completed, seconds: load.elapsedSeconds, errors: load.errors, non2xx: load.non2xx, latencyP50Us: load.latencyUs.p50, latencyP99Us: load.latencyUs.p99 };
    }
    result.cpu = cpuUse(before, cpuSnapshot(servers.proxyPid[target], servers.backend.pid, pinning), result.requests);
    if (result.errors > 0 || result.non2xx > 0) warn(`${target}: ${result.errors} socket errors and ${result.non2xx} non-2xx answers during the saturation run`);
    if (result.cpu.foreignShareOfServerCpu > DISTURBED) warn(`${target}: other processes took ${fmt(result.cpu.foreignShareOfServerCpu * 100)}% of the server CPU during the saturation run: its req/s is low; CPU per request is the steadier figure`);
    results[target] = result;
    log(`  ${target.padEnd(8)} ${fmt(result.requestsPerSecond)} req/s  (${result.requests} requests in ${round(result.seconds, 1)} s; CPU per request: proxy ${fmt(result.cpu.proxyUsPerRequest)} µs, backend ${fmt(result.cpu.backendUsPerRequest)} µs; other processes took ${fmt(result.cpu.foreignShareOfServerCpu * 100)}% of the server CPU)`);
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// b. Latency at a fixed rate, open loop

type Latency = LoadResult & { foreignShareOfServerCpu: number };

async function measureLatency(servers: Servers, points: Endpoints, token: string, pinning: Pinning): Promise<Partial<Record<Target, Latency>>> {
  const results: Partial<Record<Target, Latency>> = {};
  for (const target of TARGETS) {
    const url = points.post[target];
    if (!url) continue;
    const before = cpuSnapshot(servers.proxyPid[target], servers.backend.pid, pinning);
    // At a fixed, moderate rate one second warms the JIT enough; the saturation runs warmed it already.
    const load = await runNodeLoad({ mode: 'open', url, headers: postHeaders(token), body: BODY, connections: CONNECTIONS, rate: RATE, durationSeconds: DURATION, warmupSeconds: Math.min(WARMUP, 1) }, pinning);
    const result: Latency = { ...load, foreignShareOfServerCpu: cpuUse(before, cpuSnapshot(servers.proxyPid[target], servers.backend.pid, pinning), load.completed).foreignShareOfServerCpu };
    if (result.errors > 0 || result.non2xx > 0) warn(`${target}: ${result.errors} errors and ${result.non2xx} non-2xx answers in the fixed-rate run`);
    if (result.foreignShareOfServerCpu > DISTURBED) warn(`${target}: other processes took ${fmt(result.foreignShareOfServerCpu * 100)}% of the server CPU during the fixed-rate run: its latencies are inflated`);
    if ((result.dispatchLagUs?.p99 ?? 0) > 200) warn(`${target}: the open-loop generator itself dispatched late (p99 ${result.dispatchLagUs?.p99} µs): latencies include that`);
    results[target] = result;
    log(`  ${target.padEnd(8)} p50 ${fmt(result.latencyUs.p50)} µs  p99 ${fmt(result.latencyUs.p99)} µs  p99.9 ${fmt(result.latencyUs.p999)} µs  max ${fmt(result.latencyUs.max)} µs  (${result.completed} requests at ${fmt(result.requestsPerSecond)}/s; generator lag p99 ${result.dispatchLagUs?.p99} µs; other processes took ${fmt(result.foreignShareOfServerCpu * 100)}% of the server CPU)`);
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// d. Memory with idle SSE streams held open

interface SseMemory {
  target: Target;
  requested: number;
  established: number;
  /** Streams the backend had open at the same moment. */
  atBackend: number;
  establishSeconds: number;
  idleRssKb: number;
  streamsRssKb: number;
  perStreamKb: number;
  /** Linear extrapolation from the measured per-stream cost; not a measurement. */
  extrapolated10kMb: number;
  note?: string;
}

interface OpenStream { req: ClientRequest; res?: IncomingMessage }

/** Opens a stream and resolves once its first bytes (the backend's ": open" comment) arrived. */
function openStream(url: string, headers: Record<string, string>, timeoutMs: number, into: OpenStream[]): Promise<boolean> {
  return new Promise((resolveOpen) => {
    const req = httpRequest(url, { method: 'GET', headers: { ...headers, accept: 'text/event-stream' }, agent: false });
    const stream: OpenStream = { req };
    into.push(stream);
    const timer = setTimeout(() => resolveOpen(false), timeoutMs);
    req.on('response', (res) => {
      stream.res = res;
      if (res.statusCode !== 200) {
        clearTimeout(timer);
        res.resume();
        resolveOpen(false);
        return;
      }
      res.once('data', () => {
        clearTimeout(timer);
        resolveOpen(true);
      });
    });
    req.on('error', () => {
      clearTimeout(timer);
      resolveOpen(false);
    });
    req.end();
  });
}

async function openStreams(url: string, headers: Record<string, string>, count: number, streams: OpenStream[]): Promise<{ established: number; seconds: number }> {
  const started = performance.now();
  const deadline = started + 30_000;
  let established = 0;
  const batch = 100;
  for (let opened = 0; opened < count && performance.now() < deadline; opened += batch) {
    const size = Math.min(batch, count - opened);
    const results = await Promise.all(Array.from({ length: size }, () => openStream(url, headers, 10_000, streams)));
    established += results.filter(Boolean).length;
    if (established < opened + size) break; // a stall: stop opening more, report what was reached
  }
  return { established, seconds: (performance.now() - started) / 1000 };
}

function closeStreams(streams: OpenStream[]): void {
  for (const stream of streams) stream.req.destroy();
  streams.length = 0;
}

function nginxWorker(nginx: Launched): number | undefined {
  return childrenOf(nginx.pid).find((pid) => /nginx: worker/.test(commandLineOf(pid)));
}

/** VmRSS after a second's rest, the median of three readings 300 ms apart (GC makes it jump). */
async function settledRss(pid: number): Promise<{ rssKb: number }> {
  await sleep(1000);
  const readings: number[] = [];
  for (let i = 0; i < 3; i++) {
    if (i > 0) await sleep(300);
    readings.push(memoryOf(pid).rssKb);
  }
  return { rssKb: median(readings) };
}

async function backendStreams(backendUrl: string): Promise<number> {
  return JSON.parse((await httpCall(`${backendUrl}/streams`)).body).open as number;
}

async function measureSseMemory(target: Target, pid: number, url: string, token: string, backendUrl: string): Promise<SseMemory> {
  const headers = { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-06-18' };
  const streams: OpenStream[] = [];
  try {
    const idle = await settledRss(pid);
    const { established, seconds } = await openStreams(url, headers, SSE_STREAMS, streams);
    const loaded = await settledRss(pid);
    const atBackend = await backendStreams(backendUrl);
    const perStreamKb = established > 0 ? (loaded.rssKb - idle.rssKb) / established : Number.NaN;
    const result: SseMemory = {
      target,
      requested: SSE_STREAMS,
      established,
      atBackend,
      establishSeconds: round(seconds, 2),
      idleRssKb: idle.rssKb,
      streamsRssKb: loaded.rssKb,
      perStreamKb: round(perStreamKb, 2),
      extrapolated10kMb: round((idle.rssKb + perStreamKb * 10_000) / 1024, 1),
    };
    if (established < SSE_STREAMS) {
      result.note = `only ${established} of ${SSE_STREAMS} streams got their first byte through the ${target} (the backend had ${atBackend} open); the rest stalled`;
      warn(`${target}: ${result.note} (see docs/performance.md)`);
    }
    return result;
  } finally {
    closeStreams(streams);
    await sleep(300);
  }
}

// ---------------------------------------------------------------------------------------------
// e. First byte of a streamed event, and start to ready

interface FirstByte { events: number; p50Us: number; p99Us: number; maxUs: number; foreignShareOfServerCpu?: number }

/** Reads the backend's timed SSE events; each event's delay = arrival hrtime − the hrtime it carries. */
function measureTicks(url: string, headers: Record<string, string>): Promise<FirstByte> {
  return new Promise((resolveTicks, reject) => {
    const deltas: number[] = [];
    let buffer = '';
    const req = httpRequest(url, { method: 'GET', headers: { ...headers, accept: 'text/event-stream' }, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`${url}: the tick stream did not end in time`)), TICK_COUNT * TICK_INTERVAL_MS + 10_000);
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`${url} answered ${res.statusCode}`));
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const now = process.hrtime.bigint();
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = /^data: (\d+)$/m.exec(event)?.[1];
          if (data) deltas.push(Number(now - BigInt(data)) / 1000);
        }
      });
      res.on('end', () => {
        clearTimeout(timer);
        // The first events pay for warm-up (JIT, first allocations); they are not the steady state.
        const steady = Float64Array.from(deltas.slice(5)).sort();
        if (steady.length === 0) {
          reject(new Error(`${url}: no events arrived`));
          return;
        }
        resolveTicks({ events: steady.length, p50Us: round(percentile(steady, 50)), p99Us: round(percentile(steady, 99)), maxUs: round(steady[steady.length - 1]!) });
      });
    });
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end();
  });
}

async function measureFirstByte(servers: Servers, points: Endpoints, ticksToken: string, pinning: Pinning): Promise<Partial<Record<Target, FirstByte>>> {
  const results: Partial<Record<Target, FirstByte>> = {};
  for (const target of TARGETS) {
    const url = points.ticks[target];
    if (!url) continue;
    const before = cpuSnapshot(servers.proxyPid[target], servers.backend.pid, pinning);
    const result = await measureTicks(url, { authorization: `Bearer ${ticksToken}` });
    result.foreignShareOfServerCpu = cpuUse(before, cpuSnapshot(servers.proxyPid[target], servers.backend.pid, pinning), result.events).foreignShareOfServerCpu;
    results[target] = result;
    log(`  ${target.padEnd(8)} p50 ${fmt(result.p50Us)} µs  p99 ${fmt(result.p99Us)} µs  max ${fmt(result.maxUs)} µs  (${result.events} events; other processes took ${fmt(result.foreignShareOfServerCpu * 100)}% of the server CPU)`);
  }
  return results;
}

interface StartSeries {
  label: string;
  /** The first start of this series, not counted in the median (new store, or empty compile cache). */
  firstStartMs: number;
  restartsMs: number[];
  medianMs: number;
  /** Median VmRSS the moment /ready first answered 200, MB. */
  rssAtReadyMb: number;
  /** Median CPU time (all threads) the process had used when /ready first answered, ms: steadier than wall time on a busy machine. */
  cpuMsAtReady: number;
}

interface StartToReady { src: StartSeries; srcCompileCache: StartSeries; dist: StartSeries | undefined; distCompileCache: StartSeries | undefined }

let seriesCount = 0;

/** 1 + STARTS starts of one way of running the gateway, each on a fresh port, against one store. */
async function startSeries(label: string, entry: string, backendUrl: string, pinning: Pinning, count: number, env: NodeJS.ProcessEnv = {}): Promise<StartSeries> {
  // Each series its own store (its own key): series share labels, never stores.
  const store = join(tmp!, `starts-${++seriesCount}.db`);
  const key = randomBytes(32).toString('base64');
  const times: number[] = [];
  const rss: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i <= count; i++) {
    const port = await freePort();
    const config = join(tmp!, `start-${i}.yaml`);
    writeFileSync(config, gatewayYaml(port, backendUrl, store, key));
    const started = performance.now();
    const proc = launch(`gateway start ${label} ${i}`, NODE, [entry, 'serve', '--config', config], {
      cpu: pinning.servers, env: { ...gatewayEnv(), ...env }, cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      times.push(await waitFor200(`http://127.0.0.1:${port}/ready`, started, 15_000, proc, 10));
      rss.push(memoryOf(proc.pid).rssKb / 1024);
      cpu.push(cpuSecondsOf(proc.pid) * 1000);
    } finally {
      await stop(proc, 'SIGTERM', 5000);
    }
  }
  const [first = Number.NaN, ...restarts] = times;
  const series = { label, firstStartMs: round(first), restartsMs: restarts.map((ms) => round(ms)), medianMs: round(median(restarts)), rssAtReadyMb: round(median(rss), 1), cpuMsAtReady: round(median(cpu.slice(1))) };
  log(`  ${label.padEnd(34)} median ${fmt(series.medianMs)} ms (${series.restartsMs.join(', ')}; first ${fmt(series.firstStartMs)}), CPU used by then ${fmt(series.cpuMsAtReady)} ms, RSS at ready ${fmt(series.rssAtReadyMb, 1)} MB`);
  return series;
}

/** The build `npm run build` makes, written under bench/results/ (gitignored) so node_modules resolves. */
function buildDist(): string | undefined {
  const outDir = join(RESULTS_DIR, 'dist');
  rmSync(outDir, { recursive: true, force: true });
  const build = spawnSync(NODE, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', outDir], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  const cli = join(outDir, 'cli.js');
  // tsc emits despite type errors (noEmitOnError is off): the JavaScript still starts.
  if (build.status !== 0 && !existsSync(cli)) {
    warn(`the tsc build for the dist start-up figures failed; skipped:\n${build.stdout}${build.stderr}`.trim().slice(0, 2000));
    return undefined;
  }
  if (build.status !== 0) notes.push(`tsc reported type errors while building dist for the start-up figures; it emitted JavaScript anyway, which was used:\n${build.stdout}`.trim().slice(0, 2000));
  return cli;
}

async function measureStartToReady(backendUrl: string, pinning: Pinning): Promise<StartToReady> {
  const src = await startSeries(`node ${relative(ROOT, GATEWAY_CLI)} serve`, GATEWAY_CLI, backendUrl, pinning, STARTS);
  // The two comparisons (what would help) get fewer restarts, to keep the whole run short.
  const fewer = Math.min(STARTS, 2);
  const srcCompileCache = await startSeries('same, NODE_COMPILE_CACHE set', GATEWAY_CLI, backendUrl, pinning, fewer, { NODE_COMPILE_CACHE: join(tmp!, 'compile-cache') });
  // The build is of this checkout: it says nothing about another copy given with --gateway.
  const cli = args.gateway ? undefined : buildDist();
  const dist = cli ? await startSeries('node dist/cli.js serve (tsc build)', cli, backendUrl, pinning, fewer) : undefined;
  const distCompileCache = cli ? await startSeries('same, NODE_COMPILE_CACHE set', cli, backendUrl, pinning, fewer, { NODE_COMPILE_CACHE: join(tmp!, 'compile-cache-dist') }) : undefined;
  return { src, srcCompileCache, dist, distCompileCache };
}

// ---------------------------------------------------------------------------------------------
// --profile: the gateway under saturation with node --cpu-prof

async function profileGateway(tools: Tools, servers: Servers, points: Endpoints, token: string, pinning: Pinning): Promise<{ summary: ProfileSummary; file: string; requestsPerSecond: number; cpuUsPerRequest: number } | undefined> {
  await stop(servers.gateway, 'SIGTERM', 10_000);
  const dir = join(tmp!, 'profile');
  mkdirSync(dir, { recursive: true });
  const gateway = launchGateway('gateway (profiled)', servers.gatewayConfig, pinning, join(tmp!, 'gateway-profile.log'), ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
  await waitFor200(`${servers.gatewayUrl}/ready`, performance.now(), 30_000, gateway, 20);
  let run: { requestsPerSecond: number; requests: number };
  const script = tools.wrk ? wrkScript(token) : undefined;
  if (tools.wrk && script && WARMUP > 0) await runWrk(tools.wrk, script, points.post.gateway!, WARMUP, pinning);
  const cpuBefore = cpuSecondsOf(gateway.pid);
  const fromUs = Number(process.hrtime.bigint() / 1000n);
  if (tools.wrk && script) {
    run = await runWrk(tools.wrk, script, points.post.gateway!, DURATION, pinning);
  } else {
    const load = await runNodeLoad({ mode: 'closed', url: points.post.gateway!, headers: postHeaders(token), body: BODY, connections: CONNECTIONS, durationSeconds: DURATION, warmupSeconds: WARMUP }, pinning);
    run = { requestsPerSecond: load.requestsPerSecond, requests: load.completed };
  }
  const toUs = Number(process.hrtime.bigint() / 1000n);
  const cpuUsPerRequest = round(((cpuSecondsOf(gateway.pid) - cpuBefore) * 1e6) / run.requests, 1);
  // SIGINT runs the gateway's own shutdown; V8 writes the profile as the process exits.
  await stop(gateway, 'SIGINT', 15_000);
  const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
  if (!file) {
    warn('the profiled gateway wrote no .cpuprofile');
    return undefined;
  }
  mkdirSync(RESULTS_DIR, { recursive: true });
  const kept = join(RESULTS_DIR, 'gateway.cpuprofile');
  copyFileSync(join(dir, file), kept);
  // Only the samples of the measured run: not start-up, warm-up or shutdown.
  const summary = summariseProfile(JSON.parse(readFileSync(kept, 'utf8')), ROOT, 30, { fromUs, toUs });
  return { summary, file: kept, requestsPerSecond: run.requestsPerSecond, cpuUsPerRequest };
}

// ---------------------------------------------------------------------------------------------
// Report

function fmt(value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 ? round(a / b, 3) : undefined;
}

function row(label: string, cells: string[], widths: number[]): string {
  return `  ${label.padEnd(38)}${cells.map((cell, i) => cell.padStart(widths[i] ?? 12)).join('')}`;
}

interface TargetVerdict { name: string; target: string; measured: string; met: boolean | undefined }

async function main(): Promise<void> {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  if (major < 22 || (major === 22 && minor < 18)) throw new Error(`needs Node 22.18+ to run TypeScript (this is ${process.version}); use npm run bench`);
  const startedAt = new Date();
  const runStart = performance.now();
  log(`Gatehouse benchmark — ${startedAt.toISOString()}`);

  log('\nTools');
  const tools = detectTools();
  // Before pinning: afterwards this process sees one CPU.
  const host = machine(tools);
  const pinning = choosePinning(tools);
  log(`  machine: ${host.nproc} CPU (${host.cpuModel}), Node ${host.node}, Linux ${host.kernel}, load average ${host.loadAverageAtStart.join(' ')}`);
  log(`  pinning: ${pinning.description}`);
  log(`  saturation: ${tools.wrk ? `wrk ${tools.wrkVersion ?? ''} (Lua POST script), 1 thread, ${CONNECTIONS} keep-alive connections` : `Node closed-loop generator (wrk unavailable), ${CONNECTIONS} connections`}, ${WARMUP} s warm-up + ${DURATION} s per target`);
  log(`  fixed rate: Node open-loop generator (bench/load.ts; wrk2 is not packaged by Debian), ${RATE} req/s, ${Math.min(WARMUP, 1)} s warm-up + ${DURATION} s per target, latency from each request's scheduled time`);
  // The load average also remembers what ran minutes ago (a previous benchmark): one second of
  // /proc/stat says whether the CPUs are busy now.
  const busyBefore = cpuBusySecondsOf('all');
  await sleep(1000);
  const busyNow = (cpuBusySecondsOf('all') - busyBefore) / host.cpus;
  log(`  the CPUs were ${fmt(busyNow * 100)}% busy in the second before the start`);
  if (busyNow > 0.2) warn(`the CPUs were ${fmt(busyNow * 100)}% busy before the benchmark started: other processes share them, so figures are noisier and lower than on a quiet machine (each run below says how much of the server CPU others took)`);
  const needFds = SSE_STREAMS * 2 + 256;
  const limit = openFilesLimit();
  if (limit.soft < needFds) warn(`open-files limit is ${limit.soft} here (hard ${limit.hard}); ${SSE_STREAMS} streams need about ${needFds}. Servers get their soft limit raised to the hard one; raise it for this shell with \`ulimit -n ${needFds}\``);

  tmp = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
  log('\nServers');
  const servers = await startServers(tools, pinning);
  const points = endpoints(servers);

  log('\nAccess tokens (DCR public client, PKCE S256, dev sign-in form, consent, /token)');
  const token = await accessToken(servers.gatewayUrl, 'bench');
  const ticksToken = await accessToken(servers.gatewayUrl, 'ticks');
  await sanityCheck(points, token);
  log('  ok: every target answers the tools/call with the backend\'s result; the gateway answers 401 without the token');

  log(`\nd. Memory with ${SSE_STREAMS} idle SSE streams held open (VmRSS from /proc/<pid>/status)`);
  const memory: SseMemory[] = [];
  // direct first, while the backend has held no stream yet; the gateway next, still fresh.
  for (const target of runs('memory') ? ['direct', 'gateway', 'nginx', 'node'] as const : []) {
    const pid = target === 'direct' ? servers.backend.pid : servers.proxyPid[target];
    const url = points.idle[target];
    if (pid !== undefined && url) memory.push(await measureSseMemory(target, pid, url, token, servers.backendUrl));
  }
  for (const item of memory) {
    log(`  ${(item.target === 'direct' ? 'backend' : item.target).padEnd(8)} idle ${fmt(item.idleRssKb / 1024, 1)} MB → ${fmt(item.streamsRssKb / 1024, 1)} MB with ${item.established}/${item.requested} streams (${fmt(item.perStreamKb, 1)} kB per stream; 10,000 streams ≈ ${fmt(item.extrapolated10kMb, 0)} MB extrapolated)`);
  }

  log(`\na. Throughput at saturation (${CONNECTIONS} connections, keep-alive)`);
  const throughput = runs('throughput') ? await measureThroughput(tools, servers, points, token, pinning) : {};

  log(`\nb. Latency at a fixed ${RATE} req/s (open loop, from the scheduled time)`);
  const latency = runs('latency') ? await measureLatency(servers, points, token, pinning) : {};

  log(`\ne. First byte of a streamed event (backend stamps each event with CLOCK_MONOTONIC; ${TICK_COUNT} events ${TICK_INTERVAL_MS} ms apart, first 5 dropped)`);
  const firstByte = runs('first-byte') ? await measureFirstByte(servers, points, ticksToken, pinning) : {};

  log(`\ne. Start to ready (spawn, poll /ready every 10 ms; per way of running: 1 first start, then the median of ${STARTS} restarts)`);
  const startToReady = runs('start') ? await measureStartToReady(servers.backendUrl, pinning) : undefined;

  let profile: Awaited<ReturnType<typeof profileGateway>>;
  if (args.profile) {
    log('\nProfile: gateway under saturation with node --cpu-prof');
    profile = await profileGateway(tools, servers, points, token, pinning);
    if (profile) log(`  ${fmt(profile.requestsPerSecond)} req/s and ${fmt(profile.cpuUsPerRequest)} µs of gateway CPU per request while profiling; profile kept at ${profile.file}\n\n${formatProfile(profile.summary).replace(/^/gm, '  ')}`);
  }

  // c. Ratios and added latency
  const rps = (target: Target) => throughput[target]?.requestsPerSecond;
  const bound = (target: Target) => throughput[target]?.cpu?.cpuBoundRequestsPerSecond;
  const ratiosOf = (value: (target: Target) => number | undefined) => ({
    gatewayOverDirect: ratio(value('gateway'), value('direct')),
    gatewayOverNginx: ratio(value('gateway'), value('nginx')),
    nginxOverDirect: ratio(value('nginx'), value('direct')),
    gatewayOverNodeProxy: ratio(value('gateway'), value('node')),
  });
  const ratios = ratiosOf(rps);
  const cpuBoundRatios = ratiosOf(bound);
  const added = (target: Target, key: 'p50' | 'p99') => {
    const a = latency[target]?.latencyUs[key];
    const d = latency.direct?.latencyUs[key];
    return a !== undefined && d !== undefined ? a - d : undefined;
  };
  const addedLatencyUs = Object.fromEntries(TARGETS.filter((target) => target !== 'direct').map((target) => [target, { p50: added(target, 'p50'), p99: added(target, 'p99') }])) as Record<Exclude<Target, 'direct'>, { p50: number | undefined; p99: number | undefined }>;
  const gatewayMemory = memory.find((item) => item.target === 'gateway');
  // A figure taken while other processes held much of the server CPU says more about them than
  // about the gateway: such verdicts are N/A, except where CPU time per request stands in.
  const pct = (share: number | undefined) => `${fmt((share ?? 0) * 100)}%`;
  const latencyDisturbed = Math.max(latency.direct?.foreignShareOfServerCpu ?? 0, latency.gateway?.foreignShareOfServerCpu ?? 0) > DISTURBED;
  const throughputDisturbed = Math.max(throughput.nginx?.cpu?.foreignShareOfServerCpu ?? 0, throughput.gateway?.cpu?.foreignShareOfServerCpu ?? 0) > DISTURBED;
  const firstByteDisturbed = (firstByte.gateway?.foreignShareOfServerCpu ?? 0) > DISTURBED;
  const throughputRatio = throughputDisturbed ? cpuBoundRatios.gatewayOverNginx : ratios.gatewayOverNginx;
  const targets: TargetVerdict[] = [
    {
      name: `added p99 latency at ${RATE} req/s`, target: '< 1 ms',
      measured: `${fmt(addedLatencyUs.gateway.p99)} µs${latencyDisturbed ? ` (disturbed: other processes took ${pct(latency.direct?.foreignShareOfServerCpu)} / ${pct(latency.gateway?.foreignShareOfServerCpu)} of the server CPU in the direct / gateway runs)` : ''}`,
      met: addedLatencyUs.gateway.p99 === undefined || latencyDisturbed ? undefined : addedLatencyUs.gateway.p99 < 1000,
    },
    {
      name: 'throughput at saturation vs nginx', target: '≥ 0.8 × nginx',
      measured: ratios.gatewayOverNginx === undefined ? 'no nginx figure' : throughputDisturbed
        ? `${cpuBoundRatios.gatewayOverNginx} × from CPU time per request (measured req/s ratio ${ratios.gatewayOverNginx} × was disturbed by other processes)`
        : `${ratios.gatewayOverNginx} × (from CPU time per request ${cpuBoundRatios.gatewayOverNginx} ×)`,
      met: throughputRatio === undefined ? undefined : throughputRatio >= 0.8,
    },
    {
      name: '10,000 idle SSE streams, RSS', target: '< 300 MB',
      measured: !gatewayMemory ? 'not measured' : gatewayMemory.established > 0 ? `${fmt(gatewayMemory.extrapolated10kMb)} MB extrapolated from ${gatewayMemory.established}${gatewayMemory.established < SSE_STREAMS ? ` of ${SSE_STREAMS} (the rest stalled)` : ''} streams` : 'no streams established',
      // Streams that never open cost nothing, so a stall must not pass for a low figure.
      met: !gatewayMemory ? undefined : gatewayMemory.established === SSE_STREAMS && gatewayMemory.extrapolated10kMb < 300,
    },
    {
      name: 'first byte of a streamed event', target: 'within 1 ms',
      measured: `p99 ${fmt(firstByte.gateway?.p99Us)} µs, p50 ${fmt(firstByte.gateway?.p50Us)} µs (direct p99 ${fmt(firstByte.direct?.p99Us)} µs)${firstByteDisturbed ? `; disturbed: other processes took ${pct(firstByte.gateway?.foreignShareOfServerCpu)} of the server CPU` : ''}`,
      met: !firstByte.gateway || firstByteDisturbed ? undefined : firstByte.gateway.p99Us < 1000,
    },
    { name: 'start to ready', target: '< 500 ms', measured: startToReady ? `median ${fmt(startToReady.src.medianMs)} ms, ${fmt(startToReady.src.cpuMsAtReady)} ms of CPU (node ${relative(ROOT, GATEWAY_CLI)} serve)` : 'not measured', met: startToReady ? startToReady.src.medianMs < 500 : undefined },
  ];

  const widths = TARGETS.map(() => 11);
  const cell = (value: number | undefined, digits = 0) => fmt(value, digits);
  const line = (label: string, value: (target: Target) => string) => log(row(label, TARGETS.map(value), widths));
  const memoryOf_ = (target: Target) => memory.find((item) => item.target === target);
  log('\nResults (node = bench/node-proxy.ts, a bare node:http + undici proxy: the floor for a Node proxy)');
  log(row('', [...TARGETS], widths));
  line('throughput at saturation, req/s', (target) => cell(rps(target)));
  line('  proxy CPU per request, µs', (target) => (target === 'direct' ? '—' : cell(throughput[target]?.cpu?.proxyUsPerRequest, 1)));
  line('  backend CPU per request, µs', (target) => cell(throughput[target]?.cpu?.backendUsPerRequest, 1));
  line('  one quiet core could serve, req/s', (target) => cell(bound(target)));
  for (const key of ['p50', 'p99', 'p999'] as const) line(`latency ${key} at ${RATE} req/s, µs`, (target) => cell(latency[target]?.latencyUs[key]));
  for (const key of ['p50', 'p99'] as const) line(`  added ${key} (minus direct), µs`, (target) => (target === 'direct' ? '—' : cell(addedLatencyUs[target][key])));
  line('SSE event first byte p50, µs', (target) => cell(firstByte[target]?.p50Us));
  line('SSE event first byte p99, µs', (target) => cell(firstByte[target]?.p99Us));
  line('RSS idle, MB', (target) => cell(memoryOf_(target) && memoryOf_(target)!.idleRssKb / 1024, 1));
  line(`RSS with ${SSE_STREAMS} idle SSE streams, MB`, (target) => cell(memoryOf_(target) && memoryOf_(target)!.streamsRssKb / 1024, 1));
  line('  streams established', (target) => cell(memoryOf_(target)?.established));
  line('  per stream, kB', (target) => cell(memoryOf_(target)?.perStreamKb, 1));
  log('  (RSS of direct is the backend\'s own: what a bare node:http server pays per stream)');
  const ratioLine = (label: string, values: ReturnType<typeof ratiosOf>) => log(`  ${label.padEnd(34)}gateway/direct ${cell(values.gatewayOverDirect, 2)} ×   gateway/nginx ${cell(values.gatewayOverNginx, 2)} ×   nginx/direct ${cell(values.nginxOverDirect, 2)} ×   gateway/node ${cell(values.gatewayOverNodeProxy, 2)} ×`);
  log('');
  ratioLine('throughput ratios, measured', ratios);
  ratioLine('throughput ratios, CPU-bound', cpuBoundRatios);
  if (startToReady) {
    const { src, srcCompileCache, dist, distCompileCache } = startToReady;
    log(`  start to ready, median ms            src ${fmt(src.medianMs)}, src + compile cache ${fmt(srcCompileCache.medianMs)}, dist ${fmt(dist?.medianMs)}, dist + compile cache ${fmt(distCompileCache?.medianMs)}`);
  }

  log('\nTargets (/work/shared/DESIGN.md, "Performance targets")');
  for (const item of targets) {
    const verdict = item.met === undefined ? 'N/A ' : item.met ? 'MET ' : 'MISS';
    log(`  [${verdict}] ${item.name.padEnd(36)} ${item.target.padEnd(14)} measured ${item.measured}`);
  }
  log(`\n  ${pinning.description}`);

  const loadAverageAtEnd = loadavg().map((value) => round(value, 2));
  const results = {
    date: startedAt.toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    durationSeconds: round((performance.now() - runStart) / 1000, 1),
    machine: { ...host, cpuBusyShareBeforeStart: round(busyNow, 3), loadAverageAtEnd },
    pinning: pinning.description,
    settings: { durationSeconds: DURATION, warmupSeconds: WARMUP, connections: CONNECTIONS, rate: RATE, sseStreams: SSE_STREAMS, starts: STARTS, bodyBytes: Buffer.byteLength(BODY) },
    generators: {
      saturation: tools.wrk ? `wrk ${tools.wrkVersion ?? ''}`.trim() : 'node closed-loop (bench/load.ts); wrk unavailable',
      fixedRate: 'node open-loop (bench/load.ts); wrk2 is not packaged by Debian',
    },
    throughput,
    ratios,
    cpuBoundRatios,
    latency,
    addedLatencyUs,
    sseMemory: memory,
    firstByte,
    startToReady,
    profile: profile ? { requestsPerSecond: profile.requestsPerSecond, cpuUsPerRequest: profile.cpuUsPerRequest, file: profile.file, ...profile.summary } : undefined,
    targets,
    notes,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  log(`\nRaw figures: bench/results/latest.json (${results.durationSeconds} s in all)`);
  if (notes.length > 0) log(`\n${notes.length} warning(s) above:\n${notes.map((note) => `  - ${note}`).join('\n')}`);
}

main().then(async () => {
  await cleanup();
  process.exit(0);
}, async (error: unknown) => {
  // After Ctrl-C the run fails on its killed children; the signal handler reports and exits.
  if (interrupted) return;
  process.stderr.write(`\nbenchmark failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  await cleanup();
  process.exit(1);
});
