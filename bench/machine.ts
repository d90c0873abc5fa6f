/**
 * The machine the run measures on: the tools it needs (nginx, wrk, taskset), installed with
 * apt-get when missing and running as root; the CPUs the load generators and the servers are
 * pinned to; and what the report records about the host.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus, loadavg, release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { NO_PIN, SSE_STREAMS } from './options.ts';
import { log, round, warn } from './output.ts';
import { cpuBusySecondsOf, findExecutable, openFilesLimit, quick } from './processes.ts';

export interface Tools {
  nginx: string | undefined;
  nginxVersion: string | undefined;
  wrk: string | undefined;
  wrkVersion: string | undefined;
  taskset: boolean;
}

/** taskset CPU lists for the load generators and for the servers; undefined = not pinned. */
export interface Pinning { load: string | undefined; servers: string | undefined; description: string }

/** Finds `binary`, installing Debian's `pkg` with apt-get when missing and running as root. */
function ensureTool(binary: string, pkg: string, skipped: string): string | undefined {
  const found = findExecutable(binary);
  if (found) return found;
  if (process.getuid?.() !== 0 || !findExecutable('apt-get')) {
    warn(`${binary} is not installed and this is not root: install it with \`sudo apt-get install ${pkg}\`. ${skipped}`);
    return undefined;
  }
  log(`  ${binary} is missing: apt-get install -y ${pkg}`);
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], {
    stdio: ['ignore', 'inherit', 'inherit'], timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 300_000 });
    install();
  }
  const after = findExecutable(binary);
  if (!after) warn(`apt-get could not install ${pkg}. ${skipped}`);
  return after;
}

export function detectTools(): Tools {
  const nginx = ensureTool('nginx', 'nginx', 'nginx figures are SKIPPED in this run.');
  const wrk = ensureTool('wrk', 'wrk', 'Saturation throughput falls back to the Node closed-loop generator (bench/load.ts), which is itself slower than wrk: figures are lower bounds.');
  const wrkRun = wrk ? spawnSync(wrk, ['-v'], { encoding: 'utf8', timeout: 5000 }) : undefined;
  return {
    nginx,
    nginxVersion: nginx ? quick(nginx, ['-v'])?.replace(/^nginx version:\s*/, '') : undefined,
    wrk,
    wrkVersion: wrkRun ? /wrk\s+(\S+)/.exec(`${wrkRun.stdout}${wrkRun.stderr}`)?.[1] : undefined,
    taskset: findExecutable('taskset') !== undefined,
  };
}

/** Pins this process (and so every load generator it starts) to CPU 0 and chooses CPU 1 for the servers. */
export function choosePinning(tools: Tools): Pinning {
  const cores = availableParallelism();
  if (NO_PIN) return { load: undefined, servers: undefined, description: 'not pinned (--no-pin)' };
  if (!tools.taskset) return { load: undefined, servers: undefined, description: 'not pinned: taskset is missing (Debian package util-linux)' };
  if (cores < 2) return { load: undefined, servers: undefined, description: `not pinned: only ${cores} CPU` };
  // This process, and every load generator it starts, on CPU 0; backend, nginx and gateway on CPU 1.
  const pinned = spawnSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { encoding: 'utf8' });
  if (pinned.status !== 0) return { load: undefined, servers: undefined, description: `not pinned: taskset failed (${pinned.stderr.trim()})` };
  return { load: '0', servers: '1', description: 'load generators (wrk, Node generator, SSE clients, this script) on CPU 0; backend, nginx and gateway on CPU 1 (taskset)' };
}

export type Machine = ReturnType<typeof machine>;

/** The host as the report records it; read before pinning, after which this process sees one CPU. */
export function machine(tools: Tools) {
  return {
    nproc: availableParallelism(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    kernel: release(),
    nginx: tools.nginxVersion ?? null,
    wrk: tools.wrkVersion ?? null,
    loadAverageAtStart: loadavg().map((value) => round(value, 2)),
  };
}

/**
 * Share of all CPUs busy during one second, now. The load average also remembers what ran
 * minutes ago (a previous benchmark): one second of /proc/stat says whether the CPUs are busy now.
 */
export async function busyShareNow(cpuCount: number): Promise<number> {
  const busyBefore = cpuBusySecondsOf('all');
  await sleep(1000);
  return (cpuBusySecondsOf('all') - busyBefore) / cpuCount;
}

/** Warns when the open-files limit is too low for SSE_STREAMS streams through a proxy. */
export function checkOpenFilesLimit(): void {
  const needFds = SSE_STREAMS * 2 + 256;
  const limit = openFilesLimit();
  if (limit.soft < needFds) warn(`open-files limit is ${limit.soft} here (hard ${limit.hard}); ${SSE_STREAMS} streams need about ${needFds}. Servers get their soft limit raised to the hard one; raise it for this shell with \`ulimit -n ${needFds}\``);
}
