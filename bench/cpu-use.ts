/**
 * CPU accounting: on a shared machine the wall-clock figures move with whatever else runs, so
 * each run also records the CPU time the servers spent per request (from /proc/<pid>/stat), which
 * does not, and how much of the server CPU other processes took meanwhile.
 */
import type { Pinning } from './machine.ts';
import { round } from './output.ts';
import { cpuBusySecondsOf, cpuSecondsOf } from './processes.ts';

/** Share of the server CPU taken by other processes above which a run is flagged as disturbed. */
export const DISTURBED = 0.1;

export interface CpuSnapshot { at: number; proxy: number; backend: number; serverCpu: number }

export interface CpuUse {
  /** CPU time of the proxy process (nginx worker, gateway) per request, µs; 0 for direct. */
  proxyUsPerRequest: number;
  backendUsPerRequest: number;
  /** Requests per second one core could serve if it ran only backend and proxy: 1e6 / (proxy + backend µs). */
  cpuBoundRequestsPerSecond: number;
  /** Share of the server CPU's time used by processes other than backend and proxy (NaN when not pinned). */
  foreignShareOfServerCpu: number;
}

export function cpuSnapshot(proxyPid: number | undefined, backendPid: number, pinning: Pinning): CpuSnapshot {
  return {
    at: performance.now(),
    proxy: proxyPid === undefined ? 0 : cpuSecondsOf(proxyPid),
    backend: cpuSecondsOf(backendPid),
    serverCpu: pinning.servers === undefined ? Number.NaN : cpuBusySecondsOf(Number(pinning.servers)),
  };
}

export function cpuUse(before: CpuSnapshot, after: CpuSnapshot, requests: number): CpuUse {
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
