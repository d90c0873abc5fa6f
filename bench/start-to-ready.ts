/**
 * e. Start to ready: spawn the gateway, poll /ready every 10 ms, per way of running it (src,
 * src with NODE_COMPILE_CACHE, the tsc build, the build with the cache): one first start, then
 * the median of the restarts.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gatewayEnv, gatewayYaml } from './gateway.ts';
import { freePort, waitFor200 } from './http.ts';
import { median } from './load.ts';
import type { Pinning } from './machine.ts';
import { GATEWAY_CLI, NODE, OTHER_GATEWAY, RESULTS_DIR, ROOT, STARTS } from './options.ts';
import { fmt, log, notes, round, warn } from './output.ts';
import { cpuSecondsOf, launch, memoryOf, stop } from './processes.ts';
import { scratchPath } from './scratch.ts';

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

export interface StartToReady { src: StartSeries; srcCompileCache: StartSeries; dist: StartSeries | undefined; distCompileCache: StartSeries | undefined }

let seriesCount = 0;

/** 1 + STARTS starts of one way of running the gateway, each on a fresh port, against one store. */
async function startSeries(label: string, entry: string, backendUrl: string, pinning: Pinning, count: number, env: NodeJS.ProcessEnv = {}): Promise<StartSeries> {
  // Each series its own store (its own key): series share labels, never stores.
  const store = scratchPath(`starts-${++seriesCount}.db`);
  const key = randomBytes(32).toString('base64');
  const times: number[] = [];
  const rss: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i <= count; i++) {
    const port = await freePort();
    const config = scratchPath(`start-${i}.yaml`);
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

export async function measureStartToReady(backendUrl: string, pinning: Pinning): Promise<StartToReady> {
  const src = await startSeries(`node ${relative(ROOT, GATEWAY_CLI)} serve`, GATEWAY_CLI, backendUrl, pinning, STARTS);
  // The two comparisons (what would help) get fewer restarts, to keep the whole run short.
  const fewer = Math.min(STARTS, 2);
  const srcCompileCache = await startSeries('same, NODE_COMPILE_CACHE set', GATEWAY_CLI, backendUrl, pinning, fewer, { NODE_COMPILE_CACHE: scratchPath('compile-cache') });
  // The build is of this checkout: it says nothing about another copy given with --gateway.
  const cli = OTHER_GATEWAY ? undefined : buildDist();
  const dist = cli ? await startSeries('node dist/cli.js serve (tsc build)', cli, backendUrl, pinning, fewer) : undefined;
  const distCompileCache = cli ? await startSeries('same, NODE_COMPILE_CACHE set', cli, backendUrl, pinning, fewer, { NODE_COMPILE_CACHE: scratchPath('compile-cache-dist') }) : undefined;
  return { src, srcCompileCache, dist, distCompileCache };
}
