/**
 * What the run prints. Every warning is also kept in `notes`, the run's single list of them: the
 * summary at the end repeats them and bench/results/latest.json records them.
 */
export const notes: string[] = [];

export function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function warn(line: string): void {
  notes.push(line);
  process.stdout.write(`\n  !!! ${line}\n\n`);
}

/** A figure for the report: grouped thousands, `digits` decimals, — when there is none. */
export function fmt(value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export const round = (value: number, digits = 0) => Math.round(value * 10 ** digits) / 10 ** digits;
