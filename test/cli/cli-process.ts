/**
 * Runs the real command line (`node src/cli.ts …`, or the built `dist/cli.js`) as a child
 * process with the repo's pinned Node, captures its output, and kills whatever is still
 * running when a test ends (`killAll` in afterEach).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';

export const REPO = resolve(import.meta.dirname, '../..');
/** The pinned Node 24 (npm package `node`), never the system one. */
export const NODE = resolve(REPO, 'node_modules/.bin/node');
/** Absolute, so the CLI runs from any working directory. */
export const CLI = resolve(REPO, 'src/cli.ts');

export interface CliProcess {
  child: ChildProcess;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal's name) when the process ends. */
  exited: Promise<number | string>;
  /** Resolves when stdout or stderr matches, rejects when the process exits first or after `ms`. */
  waitForOutput(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
}

const running = new Set<ChildProcess>();

/** The environment without GATEHOUSE_* variables, which would override the files under test. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GATEHOUSE_')));
  return { ...env, ...extra };
}

export function startCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; script?: string } = {}): CliProcess {
  const child = spawn(NODE, [options.script ?? CLI, ...args], {
    cwd: options.cwd ?? REPO,
    env: options.env ?? cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { out += chunk; listeners.forEach((listener) => listener()); });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { err += chunk; listeners.forEach((listener) => listener()); });
  const exited = new Promise<number | string>((done) => {
    child.once('close', (code, signal) => {
      running.delete(child);
      done(code ?? signal ?? 'unknown');
      listeners.forEach((listener) => listener());
    });
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForOutput(pattern, ms = 10_000) {
      return new Promise((resolveMatch, reject) => {
        const timer = setTimeout(() => finish(new Error(`no output matching ${pattern} within ${ms} ms\nstdout: ${out}\nstderr: ${err}`)), ms);
        const check = () => {
          const match = out.match(pattern) ?? err.match(pattern);
          if (match) finish(undefined, match);
          else if (child.exitCode !== null || child.signalCode !== null) finish(new Error(`exited (${child.exitCode ?? child.signalCode}) before output matching ${pattern}\nstdout: ${out}\nstderr: ${err}`));
        };
        const finish = (error?: Error, match?: RegExpMatchArray) => {
          clearTimeout(timer);
          listeners.delete(check);
          if (error) reject(error);
          else resolveMatch(match!);
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** Runs to completion; kills the process if it takes longer than `ms`. */
export async function runCli(args: string[], options: Parameters<typeof startCli>[1] & { ms?: number } = {}): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const run = startCli(args, options);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), options.ms ?? 15_000);
  const code = await run.exited;
  clearTimeout(timer);
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

/** Stops every child still running: SIGTERM, then SIGKILL after a grace period. */
export async function killAll(graceMs = 2000): Promise<void> {
  await Promise.all([...running].map((child) => new Promise<void>((done) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      running.delete(child);
      done();
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('close', () => {
      clearTimeout(timer);
      running.delete(child);
      done();
    });
    child.kill('SIGTERM');
  })));
}

/** Polls `fetch(url)` until `accept(response)` or `ms` passes; returns the last response's status and body. */
export async function pollUntil(url: string, accept: (status: number, body: string) => boolean, ms = 10_000): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + ms;
  let last = { status: 0, body: '' };
  for (;;) {
    try {
      const response = await fetch(url);
      last = { status: response.status, body: await response.text() };
      if (accept(last.status, last.body)) return last;
    } catch (error) {
      last = { status: 0, body: String(error) };
    }
    if (Date.now() > deadline) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
}
