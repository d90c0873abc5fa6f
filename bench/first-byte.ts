/**
 * e. First byte of a streamed event: the backend stamps each of TICK_COUNT SSE events with
 * CLOCK_MONOTONIC; the delay of each is its arrival here minus that stamp.
 */
import { request as httpRequest } from 'node:http';
import { TICK_COUNT, TICK_INTERVAL_MS } from './backend.ts';
import { cpuSnapshot, cpuUse } from './cpu-use.ts';
import { percentile } from './load.ts';
import type { Pinning } from './machine.ts';
import { TARGETS, type Target } from './options.ts';
import { fmt, log, round } from './output.ts';
import type { Endpoints } from './request.ts';
import type { Servers } from './servers.ts';

export interface FirstByte { events: number; p50Us: number; p99Us: number; maxUs: number; foreignShareOfServerCpu?: number }

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

export async function measureFirstByte(servers: Servers, points: Endpoints, ticksToken: string, pinning: Pinning): Promise<Partial<Record<Target, FirstByte>>> {
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
