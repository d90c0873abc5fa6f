/**
 * The benchmark's command line (bench/run.ts documents it; --help prints that) and the constants
 * every phase shares. Parsed once, on import: a bad value ends the run before anything starts.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

export const ROOT = resolve(import.meta.dirname, '..');
export const RESULTS_DIR = join(ROOT, 'bench', 'results');
export const NODE = process.execPath;
/** `node` is bench/node-proxy.ts: node:http + undici and nothing else, the floor for a Node proxy. */
export const TARGETS = ['direct', 'nginx', 'node', 'gateway'] as const;
export type Target = typeof TARGETS[number];

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '50' },
    rate: { type: 'string', default: '1000' },
    'sse-streams': { type: 'string', default: '1000' },
    starts: { type: 'string', default: '5' },
    profile: { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
    skip: { type: 'string', default: '' },
    gateway: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  // The usage is the entry point's opening comment.
  process.stdout.write(readFileSync(new URL('./run.ts', import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*\n?/, '').replace(/^ \* ?/gm, ''));
  process.exit(0);
}

function bounded(name: string, value: string | undefined, min: number, max: number): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number < min || number > max) {
    process.stderr.write(`--${name} must be a number from ${min} to ${max}\n`);
    process.exit(2);
  }
  return number;
}

export const DURATION = bounded('duration', args.duration, 1, 60);
export const WARMUP = bounded('warmup', args.warmup, 0, 30);
export const CONNECTIONS = bounded('connections', args.connections, 1, 1000);
export const RATE = bounded('rate', args.rate, 10, 20_000);
export const SSE_STREAMS = bounded('sse-streams', args['sse-streams'], 1, 20_000);
export const STARTS = bounded('starts', args.starts, 1, 20);
export const PROFILE = args.profile;
export const NO_PIN = args['no-pin'];
/** The gateway's entry point: this checkout's src/cli.ts unless --gateway names another. */
export const GATEWAY_CLI = resolve(args.gateway ?? join(ROOT, 'src', 'cli.ts'));
/** True when --gateway names another copy of the gateway than this checkout's. */
export const OTHER_GATEWAY = args.gateway !== undefined;

const PHASES = ['memory', 'throughput', 'latency', 'first-byte', 'start'] as const;
const SKIP = new Set(String(args.skip).split(',').map((phase) => phase.trim()).filter(Boolean));
for (const phase of SKIP) {
  if (!(PHASES as readonly string[]).includes(phase)) {
    process.stderr.write(`--skip takes a comma-separated list of ${PHASES.join(', ')}; not ${phase}\n`);
    process.exit(2);
  }
}
/** Whether this run measures `phase` (not named in --skip). */
export const runs = (phase: typeof PHASES[number]) => !SKIP.has(phase);
