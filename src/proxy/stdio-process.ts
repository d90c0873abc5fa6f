/**
 * One spawned MCP server speaking the stdio transport (MCP basic/transports "stdio"):
 * newline-delimited JSON-RPC on stdin and stdout, framed by the SDK's own ReadBuffer and
 * serializeMessage; stderr is the server's log, of which the last few KiB are kept for the
 * gateway's log when the process dies.
 *
 * The program runs without a shell, with exactly the argv it was given, as the leader of its
 * own process group (`detached`), so that stopping it signals the group: helpers it started
 * (an `npx` wrapper and the node it runs, a language server) end with it instead of being
 * orphaned. Stopping is: close stdin (the stdio transport's normal shutdown), SIGTERM to the
 * group, and SIGKILL to the group after a grace period. Node reaps the leader itself, so no
 * zombie is left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { LaunchSpec } from './stdio-env.ts';

/** Bytes of stderr kept for the log. */
const STDERR_TAIL_BYTES = 8 * 1024;
/** Time between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 2000;

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the program could not be started at all (ENOENT, EACCES). */
  spawnError?: Error | undefined;
  /** The end of what the process wrote to stderr. */
  stderrTail: string;
}

export interface StdioProcessEvents {
  message(message: JSONRPCMessage): void;
  /** A stdout line that is not a JSON-RPC message (servers that print banners to stdout). */
  junk(error: Error): void;
  exit(exit: ProcessExit): void;
}

/** Every group started here and not yet known to be gone, for the last-resort kill at exit. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // The gateway exiting without close() (an uncaught error, process.exit) must not leave
  // servers behind: kill what is left synchronously, as 'exit' handlers must be.
  process.once('exit', () => {
    for (const pid of liveGroups) signalGroup(pid, 'SIGKILL');
  });
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** How long an exit waits for the rest of the group (helpers killed with the leader) to be gone. */
const GROUP_GONE_MS = 1000;

/**
 * Resolves once no process of the group is left (signal 0 answers ESRCH), or after
 * GROUP_GONE_MS: a SIGKILL is delivered asynchronously, so helpers may outlive their leader by
 * a moment, and a stop that resolved before they are gone would report a process as stopped
 * that still runs.
 */
async function groupGone(pid: number): Promise<void> {
  const until = Date.now() + GROUP_GONE_MS;
  while (Date.now() < until) {
    try {
      process.kill(-pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export class StdioProcess {
  readonly pid: number | undefined;
  #child: ChildProcess;
  #buffer = new ReadBuffer();
  #stderr: Buffer[] = [];
  #stderrBytes = 0;
  #exit: Promise<ProcessExit>;
  #exited = false;
  #spawnError: Error | undefined;

  constructor(spec: LaunchSpec, events: StdioProcessEvents) {
    installExitHook();
    this.#child = spawn(spec.program, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      shell: false,
      detached: true,
      windowsHide: true,
    });
    this.pid = this.#child.pid;
    if (this.pid !== undefined) liveGroups.add(this.pid);

    this.#child.stdout?.on('data', (chunk: Buffer) => {
      try {
        this.#buffer.append(chunk);
      } catch (error) {
        // A line longer than the SDK's 10 MiB limit: the stream cannot be resynchronised.
        events.junk(error as Error);
        void this.stop();
        return;
      }
      for (;;) {
        let message: JSONRPCMessage | null;
        try {
          message = this.#buffer.readMessage();
        } catch (error) {
          // The bad line is already consumed; carry on with the next one.
          events.junk(error as Error);
          continue;
        }
        if (message === null) break;
        events.message(message);
      }
    });
    this.#child.stderr?.on('data', (chunk: Buffer) => this.#keepStderr(chunk));
    // A server that stops reading (or died) makes writes fail with EPIPE: the exit reports it.
    this.#child.stdin?.on('error', () => undefined);
    this.#child.stdout?.on('error', () => undefined);
    this.#child.stderr?.on('error', () => undefined);

    this.#exit = new Promise((resolve) => {
      this.#child.once('error', (error) => {
        // Emitted when spawning failed; 'close' may not follow then.
        this.#spawnError = error;
        if (this.pid === undefined) this.#finish(resolve, null, null);
      });
      // The leader is gone: helpers it left in its group go too (they would be orphans, and
      // they may hold the pipes open). 'close' then follows once the pipes are drained, with
      // the stderr tail complete; if something outside the group still holds them, the exit
      // is reported without waiting for that.
      this.#child.once('exit', (code, signal) => {
        if (this.pid !== undefined) signalGroup(this.pid, 'SIGKILL');
        setTimeout(() => this.#finish(resolve, code, signal), 1000).unref();
      });
      this.#child.once('close', (code, signal) => {
        if (this.pid === undefined) this.#finish(resolve, code, signal);
        else void groupGone(this.pid).then(() => this.#finish(resolve, code, signal));
      });
    });
    void this.#exit.then((exit) => events.exit(exit));
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Resolves once the process is gone. */
  get done(): Promise<ProcessExit> {
    return this.#exit;
  }

  send(message: JSONRPCMessage): void {
    if (this.#exited || !this.#child.stdin?.writable) return;
    this.#child.stdin.write(serializeMessage(message));
  }

  /** Ends the process and its group: stdin closed, SIGTERM, SIGKILL after the grace period. */
  async stop(graceMs: number = KILL_GRACE_MS): Promise<ProcessExit> {
    if (!this.#exited && this.pid !== undefined) {
      this.#child.stdin?.end();
      signalGroup(this.pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (this.pid !== undefined) signalGroup(this.pid, 'SIGKILL');
      }, graceMs);
      await this.#exit;
      clearTimeout(timer);
    }
    return this.#exit;
  }

  #finish(resolve: (exit: ProcessExit) => void, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#exited) return;
    this.#exited = true;
    if (this.pid !== undefined) liveGroups.delete(this.pid);
    resolve({ code, signal, spawnError: this.#spawnError, stderrTail: this.#stderrTail() });
  }

  #keepStderr(chunk: Buffer): void {
    this.#stderr.push(chunk);
    this.#stderrBytes += chunk.length;
    while (this.#stderrBytes - (this.#stderr[0]?.length ?? 0) >= STDERR_TAIL_BYTES && this.#stderr.length > 1) {
      this.#stderrBytes -= this.#stderr.shift()?.length ?? 0;
    }
  }

  #stderrTail(): string {
    const all = Buffer.concat(this.#stderr);
    return all.subarray(Math.max(0, all.length - STDERR_TAIL_BYTES)).toString('utf8');
  }
}
