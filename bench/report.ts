/**
 * c. The report: ratios between the targets, latency added over direct, the verdict on each
 * performance target (/work/shared/DESIGN.md, "Performance targets"), the results table, and
 * every figure written to bench/results/latest.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, relative } from 'node:path';
import { DISTURBED } from './cpu-use.ts';
import type { FirstByte } from './first-byte.ts';
import type { Throughput } from './generators.ts';
import type { Latency } from './latency.ts';
import type { Machine, Pinning, Tools } from './machine.ts';
import { CONNECTIONS, DURATION, GATEWAY_CLI, RATE, RESULTS_DIR, ROOT, SSE_STREAMS, STARTS, TARGETS, WARMUP, type Target } from './options.ts';
import { fmt, log, notes, round } from './output.ts';
import type { GatewayProfile } from './profile-gateway.ts';
import { BODY } from './request.ts';
import type { SseMemory } from './sse-memory.ts';
import type { StartToReady } from './start-to-ready.ts';

/** What the phases measured; a skipped phase leaves its part empty or undefined. */
export interface Measurements {
  memory: SseMemory[];
  throughput: Partial<Record<Target, Throughput>>;
  latency: Partial<Record<Target, Latency>>;
  firstByte: Partial<Record<Target, FirstByte>>;
  startToReady: StartToReady | undefined;
  profile: GatewayProfile | undefined;
}

interface Ratios { gatewayOverDirect: number | undefined; gatewayOverNginx: number | undefined; nginxOverDirect: number | undefined; gatewayOverNodeProxy: number | undefined }
type AddedLatency = Record<Exclude<Target, 'direct'>, { p50: number | undefined; p99: number | undefined }>;

/** Ratios from measured req/s, and from the req/s one quiet core could serve (CPU time per request). */
interface Comparison { ratios: Ratios; cpuBoundRatios: Ratios; addedLatencyUs: AddedLatency }

interface TargetVerdict { name: string; target: string; measured: string; met: boolean | undefined }

/** The run as a whole, for latest.json. */
export interface RunInfo { startedAt: Date; runStart: number; host: Machine; busyNow: number; pinning: Pinning; tools: Tools }

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 ? round(a / b, 3) : undefined;
}

function row(label: string, cells: string[], widths: number[]): string {
  return `  ${label.padEnd(38)}${cells.map((cell, i) => cell.padStart(widths[i] ?? 12)).join('')}`;
}

const rps = (m: Measurements) => (target: Target) => m.throughput[target]?.requestsPerSecond;
const cpuBound = (m: Measurements) => (target: Target) => m.throughput[target]?.cpu?.cpuBoundRequestsPerSecond;

function ratiosOf(value: (target: Target) => number | undefined): Ratios {
  return {
    gatewayOverDirect: ratio(value('gateway'), value('direct')),
    gatewayOverNginx: ratio(value('gateway'), value('nginx')),
    nginxOverDirect: ratio(value('nginx'), value('direct')),
    gatewayOverNodeProxy: ratio(value('gateway'), value('node')),
  };
}

export function compare(m: Measurements): Comparison {
  const added = (target: Target, key: 'p50' | 'p99') => {
    const a = m.latency[target]?.latencyUs[key];
    const d = m.latency.direct?.latencyUs[key];
    return a !== undefined && d !== undefined ? a - d : undefined;
  };
  const addedLatencyUs = Object.fromEntries(TARGETS.filter((target) => target !== 'direct').map((target) => [target, { p50: added(target, 'p50'), p99: added(target, 'p99') }])) as AddedLatency;
  return { ratios: ratiosOf(rps(m)), cpuBoundRatios: ratiosOf(cpuBound(m)), addedLatencyUs };
}

/**
 * A figure taken while other processes held much of the server CPU says more about them than
 * about the gateway: such verdicts are N/A, except where CPU time per request stands in.
 */
export function verdicts(m: Measurements, { ratios, cpuBoundRatios, addedLatencyUs }: Comparison): TargetVerdict[] {
  const { latency, throughput, firstByte, startToReady } = m;
  const gatewayMemory = m.memory.find((item) => item.target === 'gateway');
  const pct = (share: number | undefined) => `${fmt((share ?? 0) * 100)}%`;
  const latencyDisturbed = Math.max(latency.direct?.foreignShareOfServerCpu ?? 0, latency.gateway?.foreignShareOfServerCpu ?? 0) > DISTURBED;
  const throughputDisturbed = Math.max(throughput.nginx?.cpu?.foreignShareOfServerCpu ?? 0, throughput.gateway?.cpu?.foreignShareOfServerCpu ?? 0) > DISTURBED;
  const firstByteDisturbed = (firstByte.gateway?.foreignShareOfServerCpu ?? 0) > DISTURBED;
  const throughputRatio = throughputDisturbed ? cpuBoundRatios.gatewayOverNginx : ratios.gatewayOverNginx;
  return [
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
}

/** The table: one column per target, then the ratios and the start-up medians. */
export function printResults(m: Measurements, { ratios, cpuBoundRatios, addedLatencyUs }: Comparison): void {
  const { throughput, latency, firstByte, startToReady } = m;
  const widths = TARGETS.map(() => 11);
  const cell = (value: number | undefined, digits = 0) => fmt(value, digits);
  const line = (label: string, value: (target: Target) => string) => log(row(label, TARGETS.map(value), widths));
  const memoryOf_ = (target: Target) => m.memory.find((item) => item.target === target);
  log('\nResults (node = bench/node-proxy.ts, a bare node:http + undici proxy: the floor for a Node proxy)');
  log(row('', [...TARGETS], widths));
  line('throughput at saturation, req/s', (target) => cell(rps(m)(target)));
  line('  proxy CPU per request, µs', (target) => (target === 'direct' ? '—' : cell(throughput[target]?.cpu?.proxyUsPerRequest, 1)));
  line('  backend CPU per request, µs', (target) => cell(throughput[target]?.cpu?.backendUsPerRequest, 1));
  line('  one quiet core could serve, req/s', (target) => cell(cpuBound(m)(target)));
  for (const key of ['p50', 'p99', 'p999'] as const) line(`latency ${key} at ${RATE} req/s, µs`, (target) => cell(latency[target]?.latencyUs[key]));
  for (const key of ['p50', 'p99'] as const) line(`  added ${key} (minus direct), µs`, (target) => (target === 'direct' ? '—' : cell(addedLatencyUs[target][key])));
  line('SSE event first byte p50, µs', (target) => cell(firstByte[target]?.p50Us));
  line('SSE event first byte p99, µs', (target) => cell(firstByte[target]?.p99Us));
  line('RSS idle, MB', (target) => cell(memoryOf_(target) && memoryOf_(target)!.idleRssKb / 1024, 1));
  line(`RSS with ${SSE_STREAMS} idle SSE streams, MB`, (target) => cell(memoryOf_(target) && memoryOf_(target)!.streamsRssKb / 1024, 1));
  line('  streams established', (target) => cell(memoryOf_(target)?.established));
  line('  per stream, kB', (target) => cell(memoryOf_(target)?.perStreamKb, 1));
  log('  (RSS of direct is the backend\'s own: what a bare node:http server pays per stream)');
  const ratioLine = (label: string, values: Ratios) => log(`  ${label.padEnd(34)}gateway/direct ${cell(values.gatewayOverDirect, 2)} ×   gateway/nginx ${cell(values.gatewayOverNginx, 2)} ×   nginx/direct ${cell(values.nginxOverDirect, 2)} ×   gateway/node ${cell(values.gatewayOverNodeProxy, 2)} ×`);
  log('');
  ratioLine('throughput ratios, measured', ratios);
  ratioLine('throughput ratios, CPU-bound', cpuBoundRatios);
  if (startToReady) {
    const { src, srcCompileCache, dist, distCompileCache } = startToReady;
    log(`  start to ready, median ms            src ${fmt(src.medianMs)}, src + compile cache ${fmt(srcCompileCache.medianMs)}, dist ${fmt(dist?.medianMs)}, dist + compile cache ${fmt(distCompileCache?.medianMs)}`);
  }
}

export function printVerdicts(targets: TargetVerdict[], pinning: Pinning): void {
  log('\nTargets (/work/shared/DESIGN.md, "Performance targets")');
  for (const item of targets) {
    const verdict = item.met === undefined ? 'N/A ' : item.met ? 'MET ' : 'MISS';
    log(`  [${verdict}] ${item.name.padEnd(36)} ${item.target.padEnd(14)} measured ${item.measured}`);
  }
  log(`\n  ${pinning.description}`);
}

/** Writes bench/results/latest.json and prints where, then every warning of the run again. */
export function writeResults(run: RunInfo, m: Measurements, comparison: Comparison, targets: TargetVerdict[]): void {
  const { tools } = run;
  const loadAverageAtEnd = loadavg().map((value) => round(value, 2));
  const { profile } = m;
  const results = {
    date: run.startedAt.toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    durationSeconds: round((performance.now() - run.runStart) / 1000, 1),
    machine: { ...run.host, cpuBusyShareBeforeStart: round(run.busyNow, 3), loadAverageAtEnd },
    pinning: run.pinning.description,
    settings: { durationSeconds: DURATION, warmupSeconds: WARMUP, connections: CONNECTIONS, rate: RATE, sseStreams: SSE_STREAMS, starts: STARTS, bodyBytes: Buffer.byteLength(BODY) },
    generators: {
      saturation: tools.wrk ? `wrk ${tools.wrkVersion ?? ''}`.trim() : 'node closed-loop (bench/load.ts); wrk unavailable',
      fixedRate: 'node open-loop (bench/load.ts); wrk2 is not packaged by Debian',
    },
    throughput: m.throughput,
    ratios: comparison.ratios,
    cpuBoundRatios: comparison.cpuBoundRatios,
    latency: m.latency,
    addedLatencyUs: comparison.addedLatencyUs,
    sseMemory: m.memory,
    firstByte: m.firstByte,
    startToReady: m.startToReady,
    profile: profile ? { requestsPerSecond: profile.requestsPerSecond, cpuUsPerRequest: profile.cpuUsPerRequest, file: profile.file, ...profile.summary } : undefined,
    targets,
    notes,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  log(`\nRaw figures: bench/results/latest.json (${results.durationSeconds} s in all)`);
  if (notes.length > 0) log(`\n${notes.length} warning(s) above:\n${notes.map((note) => `  - ${note}`).join('\n')}`);
}
