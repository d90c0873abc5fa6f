/**
 * Load generators in Node (run as a child pinned to the load CPU; prints one JSON line):
 *
 *   open    fixed-rate, open-loop: request i is due at start + i/rate whether or not earlier
 *           ones have answered, and its latency is measured from that due time, not from when it
 *           was actually sent. A stall in the server therefore shows in the latency of every
 *           request that should have gone out during it, instead of silently thinning the load
 *           ("coordinated omission", Gil Tene). This stands in for wrk2, which Debian does not
 *           package.
 *   closed  saturation with N keep-alive connections each sending back to back: only used when
 *           wrk cannot be had.
 *
 * Usage: node bench/load.ts '<json LoadSpec>'
 */
import { Pool } from 'undici';

export interface LoadSpec {
  mode: 'open' | 'closed';
  url: string;
  headers: Record<string, string>;
  body: string;
  connections: number;
  durationSeconds: number;
  warmupSeconds: number;
  /** open mode only. */
  rate?: number;
}

export interface LoadResult {
  mode: 'open' | 'closed';
  sent: number;
  completed: number;
  errors: number;
  non2xx: number;
  elapsedSeconds: number;
  requestsPerSecond: number;
  /** Microseconds: from the due time (open) or the send (closed) to the whole body read. */
  latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number };
  /** open mode: how late the generator itself dispatched requests (its own health check), µs. */
  dispatchLagUs?: { p50: number; p99: number; max: number };
}

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export const median = (values: number[]) => percentile(Float64Array.from(values).sort(), 50);

function summarise(values: Float64Array): LoadResult['latencyUs'] {
  const sorted = Float64Array.from(values).sort();
  const us = (ms: number) => Math.round(ms * 1000);
  return {
    p50: us(percentile(sorted, 50)),
    p90: us(percentile(sorted, 90)),
    p99: us(percentile(sorted, 99)),
    p999: us(percentile(sorted, 99.9)),
    max: us(sorted[sorted.length - 1] ?? Number.NaN),
  };
}

async function openLoop(spec: LoadSpec, pool: Pool, path: string, seconds: number, record: boolean): Promise<LoadResult> {
  const rate = spec.rate ?? 1000;
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const latency = new Float64Array(total);
  const lag = new Float64Array(total);
  let completed = 0;
  let errors = 0;
  let non2xx = 0;
  let next = 0;
  const start = performance.now() + 20;
  const finished = Promise.withResolvers<void>();

  const fire = (index: number, due: number) => {
    lag[index] = performance.now() - due;
    pool.request({ path, method: 'POST', headers: spec.headers, body: spec.body }).then(async (response) => {
      await response.body.text();
      latency[index] = performance.now() - due;
      if (response.statusCode < 200 || response.statusCode > 299) non2xx++;
    }, () => {
      latency[index] = performance.now() - due;
      errors++;
    }).finally(() => {
      completed++;
      if (completed === total) finished.resolve();
    });
  };

  // Spins on setImmediate: I/O is polled between turns, and dispatch is accurate to a few µs
  // instead of the ~1 ms a timer would give. The load CPU is this process's alone.
  const pump = () => {
    const now = performance.now();
    while (next < total && start + next * interval <= now) {
      fire(next, start + next * interval);
      next++;
    }
    if (next < total) setImmediate(pump);
  };
  pump();
  const guard = setTimeout(() => finished.resolve(), (seconds + 30) * 1000);
  await finished.promise;
  clearTimeout(guard);
  const elapsed = (performance.now() - start) / 1000;
  const result: LoadResult = {
    mode: 'open',
    sent: next,
    completed,
    errors,
    non2xx,
    elapsedSeconds: elapsed,
    requestsPerSecond: completed / elapsed,
    latencyUs: summarise(latency.subarray(0, completed)),
  };
  if (record) {
    const sortedLag = Float64Array.from(lag).sort();
    result.dispatchLagUs = {
      p50: Math.round(percentile(sortedLag, 50) * 1000),
      p99: Math.round(percentile(sortedLag, 99) * 1000),
      max: Math.round((sortedLag[sortedLag.length - 1] ?? 0) * 1000),
    };
  }
  return result;
}

async function closedLoop(spec: LoadSpec, pool: Pool, path: string, seconds: number): Promise<LoadResult> {
  const deadline = performance.now() + seconds * 1000;
  const samples: number[] = [];
  let errors = 0;
  let non2xx = 0;
  let sent = 0;
  const start = performance.now();
  const worker = async () => {
    while (performance.now() < deadline) {
      const began = performance.now();
      sent++;
      try {
        const response = await pool.request({ path, method: 'POST', headers: spec.headers, body: spec.body });
        await response.body.text();
        if (response.statusCode < 200 || response.statusCode > 299) non2xx++;
      } catch {
        errors++;
      }
      samples.push(performance.now() - began);
    }
  };
  await Promise.all(Array.from({ length: spec.connections }, worker));
  const elapsed = (performance.now() - start) / 1000;
  return {
    mode: 'closed',
    sent,
    completed: samples.length,
    errors,
    non2xx,
    elapsedSeconds: elapsed,
    requestsPerSecond: samples.length / elapsed,
    latencyUs: summarise(Float64Array.from(samples)),
  };
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const url = new URL(spec.url);
  const pool = new Pool(url.origin, { connections: spec.connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const path = `${url.pathname}${url.search}`;
  try {
    if (spec.mode === 'open') {
      if (spec.warmupSeconds > 0) await openLoop(spec, pool, path, spec.warmupSeconds, false);
      return await openLoop(spec, pool, path, spec.durationSeconds, true);
    }
    if (spec.warmupSeconds > 0) await closedLoop(spec, pool, path, spec.warmupSeconds);
    return await closedLoop(spec, pool, path, spec.durationSeconds);
  } finally {
    await pool.close().catch(() => {});
  }
}

if (import.meta.main) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
  // A parent that dies must not leave a generator running.
  process.stdin.resume();
  process.stdin.once('close', () => process.exit(3));
  runLoad(spec).then((result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  }, (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
