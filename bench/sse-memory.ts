/**
 * d. Memory with idle SSE streams held open: each server's VmRSS (from /proc/<pid>/status) at
 * rest and again with SSE_STREAMS streams open through it, and the cost per stream.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpCall } from './http.ts';
import { median } from './load.ts';
import { SSE_STREAMS, type Target } from './options.ts';
import { fmt, log, round, warn } from './output.ts';
import { memoryOf } from './processes.ts';
import type { Endpoints } from './request.ts';
import type { Servers } from './servers.ts';

export interface SseMemory {
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

/** Every target in turn (direct is the backend's own RSS), then one line per target. */
export async function measureMemory(servers: Servers, points: Endpoints, token: string): Promise<SseMemory[]> {
  const memory: SseMemory[] = [];
  // direct first, while the backend has held no stream yet; the gateway next, still fresh.
  for (const target of ['direct', 'gateway', 'nginx', 'node'] as const) {
    const pid = target === 'direct' ? servers.backend.pid : servers.proxyPid[target];
    const url = points.idle[target];
    if (pid !== undefined && url) memory.push(await measureSseMemory(target, pid, url, token, servers.backendUrl));
  }
  for (const item of memory) {
    log(`  ${(item.target === 'direct' ? 'backend' : item.target).padEnd(8)} idle ${fmt(item.idleRssKb / 1024, 1)} MB → ${fmt(item.streamsRssKb / 1024, 1)} MB with ${item.established}/${item.requested} streams (${fmt(item.perStreamKb, 1)} kB per stream; 10,000 streams ≈ ${fmt(item.extrapolated10kMb, 0)} MB extrapolated)`);
  }
  return memory;
}
