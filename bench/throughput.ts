/**
 * a. Saturation throughput: each target as fast as it goes with CONNECTIONS keep-alive
 * connections, with wrk (or the Node closed-loop generator when wrk cannot be had), and the CPU
 * time backend and proxy spent per request meanwhile.
 */
import { cpuSnapshot, cpuUse, DISTURBED, type CpuSnapshot } from './cpu-use.ts';
import { runNodeLoad, runWrk, wrkScript, type Throughput } from './generators.ts';
import type { Pinning, Tools } from './machine.ts';
import { CONNECTIONS, DURATION, TARGETS, WARMUP, type Target } from './options.ts';
import { fmt, log, round, warn } from './output.ts';
import { BODY, postHeaders, type Endpoints } from './request.ts';
import type { Servers } from './servers.ts';

export async function measureThroughput(tools: Tools, servers: Servers, points: Endpoints, token: string, pinning: Pinning): Promise<Partial<Record<Target, Throughput>>> {
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
