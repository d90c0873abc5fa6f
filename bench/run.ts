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
import { TICK_COUNT, TICK_INTERVAL_MS } from './backend.ts';
import { measureFirstByte } from './first-byte.ts';
import { measureLatency } from './latency.ts';
import { busyShareNow, checkOpenFilesLimit, choosePinning, detectTools, machine, type Pinning, type Tools } from './machine.ts';
import { CONNECTIONS, DURATION, PROFILE, RATE, runs, SSE_STREAMS, STARTS, WARMUP } from './options.ts';
import { fmt, log, warn } from './output.ts';
import { formatProfile } from './profile.ts';
import { profileGateway } from './profile-gateway.ts';
import { compare, printResults, printVerdicts, verdicts, writeResults, type Measurements, type RunInfo } from './report.ts';
import { accessToken, endpoints, sanityCheck, type Endpoints } from './request.ts';
import { cleanup, cleanUpOnEveryExit, createScratch, wasInterrupted } from './scratch.ts';
import { startServers, type Servers } from './servers.ts';
import { measureMemory } from './sse-memory.ts';
import { measureStartToReady } from './start-to-ready.ts';
import { measureThroughput } from './throughput.ts';

cleanUpOnEveryExit();

function checkNode(): void {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  if (major < 22 || (major === 22 && minor < 18)) throw new Error(`needs Node 22.18+ to run TypeScript (this is ${process.version}); use npm run bench`);
}

/** The tools, the host, the pinning, and how busy the CPUs are before anything starts. */
async function surveyMachine(): Promise<Omit<RunInfo, 'startedAt' | 'runStart'>> {
  log('\nTools');
  const tools = detectTools();
  // Before pinning: afterwards this process sees one CPU.
  const host = machine(tools);
  const pinning = choosePinning(tools);
  log(`  machine: ${host.nproc} CPU (${host.cpuModel}), Node ${host.node}, Linux ${host.kernel}, load average ${host.loadAverageAtStart.join(' ')}`);
  log(`  pinning: ${pinning.description}`);
  log(`  saturation: ${tools.wrk ? `wrk ${tools.wrkVersion ?? ''} (Lua POST script), 1 thread, ${CONNECTIONS} keep-alive connections` : `Node closed-loop generator (wrk unavailable), ${CONNECTIONS} connections`}, ${WARMUP} s warm-up + ${DURATION} s per target`);
  log(`  fixed rate: Node open-loop generator (bench/load.ts; wrk2 is not packaged by Debian), ${RATE} req/s, ${Math.min(WARMUP, 1)} s warm-up + ${DURATION} s per target, latency from each request's scheduled time`);
  const busyNow = await busyShareNow(host.cpus);
  log(`  the CPUs were ${fmt(busyNow * 100)}% busy in the second before the start`);
  if (busyNow > 0.2) warn(`the CPUs were ${fmt(busyNow * 100)}% busy before the benchmark started: other processes share them, so figures are noisier and lower than on a quiet machine (each run below says how much of the server CPU others took)`);
  checkOpenFilesLimit();
  return { tools, host, pinning, busyNow };
}

/** One token per gateway service, and a check that every target answers before measuring. */
async function issueTokens(servers: Servers, points: Endpoints): Promise<{ token: string; ticksToken: string }> {
  log('\nAccess tokens (DCR public client, PKCE S256, dev sign-in form, consent, /token)');
  const token = await accessToken(servers.gatewayUrl, 'bench');
  const ticksToken = await accessToken(servers.gatewayUrl, 'ticks');
  await sanityCheck(points, token);
  log('  ok: every target answers the tools/call with the backend\'s result; the gateway answers 401 without the token');
  return { token, ticksToken };
}

/** The phases in order, each under its heading; --skip leaves a phase's heading and no figures. */
async function measure(tools: Tools, servers: Servers, points: Endpoints, tokens: { token: string; ticksToken: string }, pinning: Pinning): Promise<Measurements> {
  const { token, ticksToken } = tokens;
  log(`\nd. Memory with ${SSE_STREAMS} idle SSE streams held open (VmRSS from /proc/<pid>/status)`);
  const memory = runs('memory') ? await measureMemory(servers, points, token) : [];

  log(`\na. Throughput at saturation (${CONNECTIONS} connections, keep-alive)`);
  const throughput = runs('throughput') ? await measureThroughput(tools, servers, points, token, pinning) : {};

  log(`\nb. Latency at a fixed ${RATE} req/s (open loop, from the scheduled time)`);
  const latency = runs('latency') ? await measureLatency(servers, points, token, pinning) : {};

  log(`\ne. First byte of a streamed event (backend stamps each event with CLOCK_MONOTONIC; ${TICK_COUNT} events ${TICK_INTERVAL_MS} ms apart, first 5 dropped)`);
  const firstByte = runs('first-byte') ? await measureFirstByte(servers, points, ticksToken, pinning) : {};

  log(`\ne. Start to ready (spawn, poll /ready every 10 ms; per way of running: 1 first start, then the median of ${STARTS} restarts)`);
  const startToReady = runs('start') ? await measureStartToReady(servers.backendUrl, pinning) : undefined;

  let profile: Measurements['profile'];
  if (PROFILE) {
    log('\nProfile: gateway under saturation with node --cpu-prof');
    profile = await profileGateway(tools, servers, points, token, pinning);
    if (profile) log(`  ${fmt(profile.requestsPerSecond)} req/s and ${fmt(profile.cpuUsPerRequest)} µs of gateway CPU per request while profiling; profile kept at ${profile.file}\n\n${formatProfile(profile.summary).replace(/^/gm, '  ')}`);
  }
  return { memory, throughput, latency, firstByte, startToReady, profile };
}

function report(run: RunInfo, measured: Measurements): void {
  const comparison = compare(measured);
  const targets = verdicts(measured, comparison);
  printResults(measured, comparison);
  printVerdicts(targets, run.pinning);
  writeResults(run, measured, comparison, targets);
}

async function main(): Promise<void> {
  checkNode();
  const startedAt = new Date();
  const runStart = performance.now();
  log(`Gatehouse benchmark — ${startedAt.toISOString()}`);
  const survey = await surveyMachine();
  createScratch();
  log('\nServers');
  const servers = await startServers(survey.tools, survey.pinning);
  const points = endpoints(servers);
  const tokens = await issueTokens(servers, points);
  const measured = await measure(survey.tools, servers, points, tokens, survey.pinning);
  report({ startedAt, runStart, ...survey }, measured);
}

main().then(async () => {
  await cleanup();
  process.exit(0);
}, async (error: unknown) => {
  // After Ctrl-C the run fails on its killed children; the signal handler reports and exits.
  if (wasInterrupted()) return;
  process.stderr.write(`\nbenchmark failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  await cleanup();
  process.exit(1);
});
