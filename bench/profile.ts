/**
 * Summarises a V8 CPU profile (`node --cpu-prof`): self time per function and per package.
 *
 * Usage: node bench/profile.ts FILE.cpuprofile [top]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  name: string;
  where: string;
  selfMs: number;
  percent: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Samples outside JavaScript: (idle), (program), (garbage collector). */
  idleMs: number;
  functions: ProfileRow[];
  packages: ProfileRow[];
}

/** `node_modules/fastify/lib/x.js` → fastify; `node:internal/…` → node internals; src files → gatehouse. */
function packageOf(url: string, root: string): string {
  if (url === '') return '(native / V8)';
  if (url.startsWith('node:')) return 'node internals';
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (inModules?.[1]) return inModules[1];
  if (url.includes(`${root}/src/`)) return 'gatehouse src';
  return url;
}

function shortUrl(url: string, root: string): string {
  return url.replace(/^file:\/\//, '').replace(`${root}/`, '').replace(/^.*node_modules\//, '');
}

/**
 * `window` limits the summary to samples taken between two instants of the monotonic clock, in µs
 * (`process.hrtime.bigint() / 1000n` in any process on the machine: V8 stamps profiles with the
 * same clock), so start-up and shutdown stay out of a profile of a load run.
 */
export function summariseProfile(profile: CpuProfile, root: string, top = 25, window?: { fromUs: number; toUs: number }): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time since the previous sample; attributing it to sample i is what
  // Chrome DevTools does.
  let at = profile.startTime;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    at += delta;
    if (window && (at < window.fromUs || at > window.toUs)) return;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });

  const functions = new Map<string, { name: string; where: string; us: number }>();
  const packages = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    totalUs += us;
    const name = frame.functionName || '(anonymous)';
    if (frame.url === '' && /^\((idle|program|garbage collector|root)\)$/.test(name)) {
      if (name === '(idle)') idleUs += us;
      const key = name;
      const row = functions.get(key) ?? { name, where: '', us: 0 };
      row.us += us;
      functions.set(key, row);
      packages.set(name, (packages.get(name) ?? 0) + us);
      continue;
    }
    const where = frame.url ? `${shortUrl(frame.url, root)}:${frame.lineNumber + 1}` : '(native)';
    const key = `${name}@${where}`;
    const row = functions.get(key) ?? { name, where, us: 0 };
    row.us += us;
    functions.set(key, row);
    const pkg = packageOf(frame.url.replace(/^file:\/\//, ''), root);
    packages.set(pkg, (packages.get(pkg) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;
  const percent = (us: number) => Math.round((us / busyUs) * 1000) / 10;
  return {
    totalMs: Math.round(totalUs / 1000),
    idleMs: Math.round(idleUs / 1000),
    functions: [...functions.values()].filter((row) => row.name !== '(idle)').sort((a, b) => b.us - a.us).slice(0, top)
      .map((row) => ({ name: row.name, where: row.where, selfMs: Math.round(row.us / 1000), percent: percent(row.us) })),
    packages: [...packages.entries()].filter(([name]) => name !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, top)
      .map(([name, us]) => ({ name, where: '', selfMs: Math.round(us / 1000), percent: percent(us) })),
  };
}

export function formatProfile(summary: ProfileSummary): string {
  const lines = [
    `CPU profile: ${summary.totalMs} ms sampled, ${summary.idleMs} ms idle; percentages are of busy time`,
    '',
    'self time by package:',
    ...summary.packages.map((row) => `  ${row.percent.toFixed(1).padStart(5)}%  ${String(row.selfMs).padStart(6)} ms  ${row.name}`),
    '',
    'top functions by self time:',
    ...summary.functions.map((row) => `  ${row.percent.toFixed(1).padStart(5)}%  ${String(row.selfMs).padStart(6)} ms  ${row.name}  ${row.where}`),
  ];
  return lines.join('\n');
}

if (import.meta.main) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node bench/profile.ts FILE.cpuprofile [top]\n');
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  process.stdout.write(`${formatProfile(summariseProfile(profile, process.cwd(), Number(process.argv[3] ?? 25)))}\n`);
}
