/**
 * Every process the benchmark starts goes through `launch`, which remembers it so that a normal
 * end, a failure, Ctrl-C or SIGTERM all stop it. Servers are pinned to the server CPU with
 * taskset and get their soft open-files limit raised to the hard one (Node cannot call
 * setrlimit, a shell can) before `exec`, so the PID we hold is the server's own and
 * /proc/<pid>/status describes it.
 */
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface Launched {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** The last lines it wrote to a piped stderr, for error messages. */
  stderrTail(): string;
}

export interface LaunchOptions {
  /** taskset CPU list, e.g. "1"; undefined = not pinned. */
  cpu?: string | undefined;
  raiseFdLimit?: boolean;
  stdio?: StdioOptions;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

const running = new Set<Launched>();

export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function launch(name: string, command: string, args: string[], options: LaunchOptions = {}): Launched {
  let argv = [command, ...args];
  if (options.cpu !== undefined) argv = ['taskset', '-c', options.cpu, ...argv];
  if (options.raiseFdLimit) argv = ['sh', '-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', ...argv];
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: options.stdio ?? ['pipe', 'pipe', 'pipe'],
    env: options.env ?? process.env,
    cwd: options.cwd,
  });
  const tail: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    tail.push(chunk);
    if (tail.length > 50) tail.shift();
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (error) => resolve(`spawn failed: ${error.message}`));
  });
  const launched: Launched = { name, child, pid: child.pid ?? -1, exited, stderrTail: () => tail.join('').trim().split('\n').slice(-15).join('\n') };
  running.add(launched);
  void exited.then(() => running.delete(launched));
  return launched;
}

export function isRunning(proc: Launched): boolean {
  return proc.child.exitCode === null && proc.child.signalCode === null;
}

/** Signals the process and waits (bounded) for it to exit; SIGKILL after `graceMs`. */
export async function stop(proc: Launched, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<number | string> {
  if (!isRunning(proc)) return proc.exited;
  proc.child.kill(signal);
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
  const result = await proc.exited;
  clearTimeout(timer);
  return result;
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].reverse().map((proc) => stop(proc, 'SIGTERM', 3000)));
}

/** Synchronous last resort (process 'exit'): no waiting possible, so SIGKILL. */
export function killAllNow(): void {
  for (const proc of running) {
    try {
      proc.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Collects a child's stdout; resolves when it exits (bounded by `timeoutMs`, then killed). */
export async function output(proc: Launched, timeoutMs: number): Promise<{ stdout: string; code: number | string }> {
  const chunks: string[] = [];
  proc.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => chunks.push(chunk));
  const timer = setTimeout(() => {
    process.stderr.write(`  ${proc.name} ran past ${timeoutMs} ms; killing it\n`);
    proc.child.kill('SIGKILL');
  }, timeoutMs);
  const code = await proc.exited;
  clearTimeout(timer);
  return { stdout: chunks.join(''), code };
}

/** VmRSS and VmHWM of a process in kB, from /proc/<pid>/status. */
export function memoryOf(pid: number): { rssKb: number; hwmKb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
}

export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function commandLineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** Soft limit on open files of this process (what its children inherit unless raised). */
export function openFilesLimit(): { soft: number; hard: number } {
  try {
    const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    const parse = (value: string | undefined) => (value === 'unlimited' ? Infinity : Number(value));
    return { soft: parse(line?.[1]), hard: parse(line?.[2]) };
  } catch {
    return { soft: Number.NaN, hard: Number.NaN };
  }
}

/** Runs a short command synchronously; its trimmed stdout+stderr, or undefined when it failed. */
export function quick(command: string, args: string[], timeoutMs = 10_000): string | undefined {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: timeoutMs });
  if (result.error || result.status !== 0) return undefined;
  return `${result.stdout}${result.stderr}`.trim();
}

/** USER_HZ, the unit of /proc CPU times: 100 on every mainstream Linux architecture. */
const CLOCK_TICKS = Number(quick('getconf', ['CLK_TCK']) ?? 100) || 100;

/** CPU time (user + system, all threads) a process has used so far, in seconds. */
export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

/** Busy time (everything but idle and iowait) of one CPU, or of all together, so far, in seconds, from /proc/stat. */
export function cpuBusySecondsOf(cpu: number | 'all'): number {
  try {
    const line = new RegExp(`^cpu${cpu === 'all' ? '' : cpu} (.*)$`, 'm').exec(readFileSync('/proc/stat', 'utf8'))?.[1];
    if (!line) return Number.NaN;
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).map(Number);
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}
