/**
 * The MCP conformance suite (`@modelcontextprotocol/conformance`, `server` mode, every
 * scenario of `--suite all`) run three ways against one server implementation
 * (conformance-server.ts):
 *
 *   direct            the server over Streamable HTTP
 *   gateway → http    the gateway in front of that server (a Streamable HTTP upstream)
 *   gateway → stdio   the gateway running the same server as a stdio process (stdio bridge):
 *                     one process shared by all of the suite's sessions (isolation user, where
 *                     the bridge multiplexes them); and, for the scenarios where the server
 *                     talks back (sampling, elicitation, progress), one process per
 *                     session (isolation session: a process start per scenario, so not all 32)
 *
 * Every scenario that passes direct must pass through the gateway. The suite's server mode
 * takes only a URL, so the gateway runs get a loopback proxy that adds the bearer token
 * (test/support/bearer-proxy.ts). A scenario passes when none of its checks is a FAILURE
 * (warnings, such as a missing SSE priming event, are allowed, as the suite itself counts them).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBearerProxy, type BearerProxy } from '../support/bearer-proxy.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';
import { startConformanceHttpServer } from './conformance-server.ts';

const cli = fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/conformance/dist/index.js', import.meta.url));
const serverScript = fileURLToPath(new URL('./conformance-server.ts', import.meta.url));
/** A run takes 2–5 s; bounded well above. */
const RUN_TIMEOUT_MS = 25_000;

let direct: Awaited<ReturnType<typeof startConformanceHttpServer>>;
let gateway: TestGateway;
const proxies: BearerProxy[] = [];
let workDir: string;

/** The scenarios run against one process per session. */
const SESSION_SCENARIOS = ['tools-call-sampling', 'tools-call-elicitation', 'tools-call-with-progress'];

/**
 * Runs every server scenario (or one) against `url`; resolves to each scenario's failed checks
 * (empty: passed).
 */
async function runSuite(url: string, name: string, scenario?: string): Promise<Map<string, string[]>> {
  const output = join(workDir, name);
  const which = scenario ? ['--scenario', scenario] : ['--suite', 'all'];
  const child = spawn(process.execPath, [cli, 'server', '--url', url, ...which, '--output-dir', output], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (chunk: Buffer) => { log += String(chunk); });
  child.stderr.on('data', (chunk: Buffer) => { log += String(chunk); });
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearTimeout(timer);
  if (code === null) throw new Error(`the conformance run "${name}" timed out:\n${log.slice(-2000)}`);

  const results = new Map<string, string[]>();
  for (const entry of await readdir(output)) {
    // server-<scenario>-<ISO timestamp>
    const scenario = /^server-(.+)-\d{4}-\d{2}-\d{2}T/.exec(entry)?.[1];
    if (!scenario) continue;
    const checks = JSON.parse(await readFile(join(output, entry, 'checks.json'), 'utf8')) as Array<{ id: string; status: string; errorMessage?: string }>;
    results.set(scenario, checks.filter((check) => check.status === 'FAILURE').map((check) => `${check.id}: ${check.errorMessage ?? ''}`));
  }
  return results;
}

async function tokenFor(service: string): Promise<string> {
  const flow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/${service}/mcp` } });
  const response = await redeem(gateway, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  return String(response.body.access_token);
}

const passed = (results: Map<string, string[]>) => [...results].filter(([, failures]) => failures.length === 0).map(([scenario]) => scenario).sort();

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'gatehouse-conformance-'));
  direct = await startConformanceHttpServer();
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: {
      http: { upstream: direct.url },
      stdio: { command: [process.execPath, serverScript, 'stdio'] },
      'stdio-user': { command: [process.execPath, serverScript, 'stdio'], isolation: 'user' },
    },
  });
  for (const service of ['http', 'stdio', 'stdio-user']) proxies.push(await startBearerProxy(`${gateway.origin}/${service}/mcp`, await tokenFor(service)));
});

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.close()));
  await gateway?.close();
  await direct?.close();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('the MCP conformance suite, server mode', () => {
  it('passes through the gateway (HTTP upstream and stdio bridge) every scenario it passes direct', async () => {
    const [alone, http, stdioUser, ...perSession] = await Promise.all([
      runSuite(direct.url, 'direct'),
      runSuite(proxies[0]!.url, 'gateway-http'),
      runSuite(proxies[2]!.url, 'gateway-stdio-user'),
      ...SESSION_SCENARIOS.map((scenario) => runSuite(proxies[1]!.url, `gateway-stdio-${scenario}`, scenario)),
    ]);
    const stdio = new Map(perSession.flatMap((results) => [...results]));
    const baseline = passed(alone);
    // The server implements every scenario: a suite that ran nothing proves nothing.
    expect(baseline).toEqual([...alone.keys()].sort());
    expect(baseline).toEqual(expect.arrayContaining(['server-initialize', 'tools-call-sampling', 'tools-call-elicitation', 'tools-call-with-progress', 'resources-subscribe', 'server-sse-polling', 'dns-rebinding-protection']));
    expect(baseline.length).toBeGreaterThanOrEqual(30);

    const failing = (results: Map<string, string[]>, scenarios = baseline) => Object.fromEntries(scenarios.filter((scenario) => results.get(scenario)?.length !== 0).map((scenario) => [scenario, results.get(scenario) ?? 'not run']));
    expect(failing(http)).toEqual({});
    expect(failing(stdioUser)).toEqual({});
    expect(failing(stdio, SESSION_SCENARIOS)).toEqual({});
  }, 40_000);
});
