/**
 * The load generators, each a child process on the load CPU: wrk with a Lua script that sends
 * the tools/call POST, and the Node generator (bench/load.ts) in open or closed loop.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CpuUse } from './cpu-use.ts';
import type { LoadResult, LoadSpec } from './load.ts';
import type { Pinning } from './machine.ts';
import { CONNECTIONS, NODE, ROOT } from './options.ts';
import { launch, output } from './processes.ts';
import { BODY, postHeaders } from './request.ts';
import { scratchPath } from './scratch.ts';

/** One saturation run of one target; `cpu` is added by the caller, which took the snapshots. */
export interface Throughput { tool: string; requestsPerSecond: number; requests: number; seconds: number; errors: number; non2xx: number; latencyP50Us: number; latencyP99Us: number; cpu?: CpuUse }

/** Writes wrk's Lua script for the POST; its `done` prints the figures as one BENCH_JSON line. */
export function wrkScript(token: string): string {
  const path = scratchPath('post.lua');
  const headers = Object.entries(postHeaders(token)).map(([name, value]) => `wrk.headers[${JSON.stringify(name)}] = ${JSON.stringify(value)}`).join('\n');
  writeFileSync(path, `-- Written by bench/generators.ts: the ~300-byte tools/call POST.
wrk.method = "POST"
wrk.body = [==[${BODY}]==]
${headers}

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nBENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`);
  return path;
}

export async function runWrk(wrk: string, script: string, url: string, seconds: number, pinning: Pinning): Promise<Throughput> {
  const proc = launch('wrk', wrk, ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--timeout', '5s', '-s', script, url], { cpu: pinning.load });
  const { stdout, code } = await output(proc, (seconds + 20) * 1000);
  const line = /BENCH_JSON (\{.*\})/.exec(stdout)?.[1];
  if (code !== 0 || !line) throw new Error(`wrk failed (${code}): ${stdout}\n${proc.stderrTail()}`);
  const raw = JSON.parse(line) as Record<string, number>;
  const seconds_ = raw.duration_us! / 1e6;
  return {
    tool: 'wrk',
    requestsPerSecond: raw.requests! / seconds_,
    requests: raw.requests!,
    seconds: seconds_,
    errors: raw.connect! + raw.read! + raw.write! + raw.timeout!,
    non2xx: raw.status!,
    latencyP50Us: raw.p50_us!,
    latencyP99Us: raw.p99_us!,
  };
}

export async function runNodeLoad(spec: LoadSpec, pinning: Pinning): Promise<LoadResult> {
  const proc = launch('load generator', NODE, [join(ROOT, 'bench', 'load.ts'), JSON.stringify(spec)], { cpu: pinning.load, raiseFdLimit: true });
  const { stdout, code } = await output(proc, (spec.durationSeconds + spec.warmupSeconds + 60) * 1000);
  if (code !== 0) throw new Error(`the load generator failed (${code}): ${proc.stderrTail()}`);
  return JSON.parse(stdout.trim().split('\n').pop()!) as LoadResult;
}
