/**
 * b. Latency at a fixed rate, open loop: RATE requests per second to each target, each latency
 * measured from the request's scheduled time (bench/load.ts explains why).
 */
import { cpuSnapshot, cpuUse, DISTURBED } from './cpu-use.ts';
import { runNodeLoad } from './generators.ts';
import type { LoadResult } from './load.ts';
import type { Pinning } from './machine.ts';
import { CONNECTIONS, DURATION, RATE, TARGETS, WARMUP, type Target } from './options.ts';
import { fmt, log, warn } from './output.ts';
import { BODY, postHeaders, type Endpoints } from './request.ts';
import type { Servers } from './servers.ts';

export type Latency = LoadResult & { foreignShareOfServerCpu: number };

export async function measureLatency(servers: Servers, points: Endpoints, token: string, pinning: Pinning): Promise<Partial<Record<Target, Latency>>> {
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
