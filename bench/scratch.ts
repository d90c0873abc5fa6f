/**
 * The run's scratch directory (configs, stores, logs, profiles) and the clean-up that removes it
 * and stops every process the run started (bench/processes.ts keeps those) on every way out: a
 * normal end, a failure, Ctrl-C, SIGTERM and SIGHUP.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killAllNow, stopAll } from './processes.ts';

let dir: string | undefined;
let interrupted = false;
let cleaning: Promise<void> | undefined;

/** Creates the scratch directory; called once, before the first server starts. */
export function createScratch(): string {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
  return dir;
}

/** A path inside the scratch directory, which must exist by now. */
export function scratchPath(...parts: string[]): string {
  if (dir === undefined) throw new Error('the scratch directory is not created yet');
  return join(dir, ...parts);
}

/** Stops every process and removes the scratch directory; once, however often it is called. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  })();
  return cleaning;
}

/** True once a signal has started the clean-up (the run then fails on its killed children). */
export function wasInterrupted(): boolean {
  return interrupted;
}

/** Installs the exit and signal handlers; a signal cleans up and exits 130. */
export function cleanUpOnEveryExit(): void {
  process.on('exit', () => {
    killAllNow();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      interrupted = true;
      process.stderr.write(`\n${signal}: stopping every process the benchmark started…\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
}
