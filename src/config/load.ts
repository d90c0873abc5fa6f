import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, type Document, type YAMLError } from 'yaml';
import type { z } from 'zod';
import { ConfigError, formatKeyPath, type ConfigProblem, type KeyPath } from './config-error.ts';
import { expandEnv, type Env, type PathProblem } from './expand.ts';
import { applyOverrides, readOverrides, type OverrideTarget } from './overrides.ts';
import { configSchema, keysAt, kindsAt, topLevelKeys, type Config } from './schema.ts';

export interface ConfigOptions {
  /** Where `${VAR}` and `GATEHOUSE_*` come from; defaults to `process.env`. */
  readonly env?: Env;
  /** Names the configuration in error messages: a file path, or a label. */
  readonly source?: string;
}

/**
 * Reads, expands, overrides and validates a YAML configuration file. Throws ConfigError, listing
 * every problem, if the file cannot be read or is not a valid configuration.
 */
export function loadConfigFile(path: string, env: Env = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(path, [{ path: '', message: `cannot read the file: ${describeReadError(error)}` }]);
  }
  return parseConfigText(text, { env, source: path });
}

/**
 * Parses YAML text, expands `${VAR}` in each string scalar, applies `GATEHOUSE_*` overrides and
 * validates. Problems that come from the file carry their line.
 */
export function parseConfigText(text: string, options: ConfigOptions = {}): Config {
  const source = options.source ?? 'configuration text';
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { prettyErrors: false, lineCounter, merge: true });
  if (document.errors.length > 0) {
    // After the first error, the parser's "unexpected token" errors and further errors on the
    // same line mostly echo that error: report one per line, and those tokens not at all.
    const problems = document.errors
      .filter((error, index) => index === 0 || error.code !== 'UNEXPECTED_TOKEN')
      .map((error) => describeYamlError(error, text, lineCounter))
      .filter((problem, index, all) => all.findIndex((other) => other.line === problem.line) === index);
    throw new ConfigError(source, problems);
  }
  let raw: unknown;
  try {
    raw = document.toJS({ maxAliasCount: 1000 });
  } catch (error) {
    throw new ConfigError(source, [{ path: '', message: error instanceof Error ? error.message : String(error) }]);
  }
  const env = options.env ?? process.env;
  const expanded = expandEnv(raw ?? {}, env);
  return validate(expanded.value, {
    env,
    source,
    earlyProblems: expanded.problems,
    locate: (path) => locate(document, lineCounter, path),
  });
}

/**
 * Validates a configuration built in code (dev mode, tests). Its strings are taken as they are,
 * without `${VAR}` expansion; `GATEHOUSE_*` overrides still apply.
 */
export function buildConfig(raw: unknown, options: ConfigOptions = {}): Config {
  return validate(raw, {
    env: options.env ?? process.env,
    source: options.source ?? 'built-in configuration',
    earlyProblems: [],
  });
}

interface ValidateOptions {
  readonly env: Env;
  readonly source: string;
  /** Problems found while expanding; validation skips the values they concern. */
  readonly earlyProblems: readonly PathProblem[];
  readonly locate?: (path: KeyPath) => { line: number; column: number } | undefined;
}

function validate(raw: unknown, { env, source, earlyProblems, locate: position }: ValidateOptions): Config {
  const overridden = applyOverrides(raw, readOverrides(env, topLevelKeys), overrideTarget);
  const result = configSchema.safeParse(overridden.value, { error: describeIssue });

  const problems: ConfigProblem[] = [];
  const seen = new Set<string>();
  const add = (path: KeyPath, message: string, fromOverride = false): void => {
    const formatted = formatKeyPath(path);
    const variable = fromOverride ? undefined : variableFor(formatted, overridden.sources);
    const problem: ConfigProblem = variable !== undefined
      ? { path: formatted, message: `${message} (set by ${variable})` }
      : { path: formatted, message, ...(fromOverride ? undefined : position?.(path)) };
    const key = `${problem.path}\n${problem.message}`;
    if (seen.has(key)) return;
    seen.add(key);
    problems.push(problem);
  };

  // An override replaces a value whose expansion failed: that failure no longer matters.
  const unexpanded = new Set<string>();
  for (const { path, message } of earlyProblems) {
    const formatted = formatKeyPath(path);
    if (variableFor(formatted, overridden.sources) !== undefined) continue;
    unexpanded.add(formatted);
    add(path, message);
  }
  for (const { path, message } of overridden.problems) add(path, message, true);
  if (!result.success) {
    for (const problem of problemsFromIssues(result.error.issues, overridden.value)) {
      if (!unexpanded.has(formatKeyPath(problem.path))) add(problem.path, problem.message);
    }
  }
  if (problems.length > 0) throw new ConfigError(source, problems);
  return deepFreeze(result.data as Config);
}

const overrideTarget: OverrideTarget = {
  takesText: (path, document) => {
    const kinds = kindsAt(path, document);
    return kinds.length > 0 && kinds.every((kind) => kind === 'string' || kind === 'enum' || kind === 'literal');
  },
  isList: (path, document) => kindsAt(path, document).includes('array'),
};

/** The `GATEHOUSE_*` variable that set this path or a mapping or list above it. */
function variableFor(path: string, sources: ReadonlyMap<string, string>): string | undefined {
  for (const [setPath, variable] of sources) {
    if (path === setPath || path.startsWith(`${setPath}.`) || path.startsWith(`${setPath}[`)) return variable;
  }
  return undefined;
}

function problemsFromIssues(issues: readonly z.core.$ZodIssue[], document: unknown): PathProblem[] {
  return issues.flatMap((issue): PathProblem[] => {
    const path = issue.path.filter((segment): segment is string | number => typeof segment !== 'symbol');
    if (issue.code !== 'unrecognized_keys') return [{ path, message: issue.message }];
    const known = keysAt(path, document);
    return issue.keys.map((key) => ({ path: [...path, key], message: unknownKeyMessage(key, known) }));
  });
}

function unknownKeyMessage(key: string, known: readonly string[]): string {
  const suggestion = closest(key, known);
  if (suggestion !== undefined) return `unknown key; did you mean ${suggestion}?`;
  return known.length > 0 ? `unknown key; the keys here are: ${known.join(', ')}` : 'unknown key';
}

function closest(word: string, candidates: readonly string[]): string | undefined {
  const limit = word.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const at = (i: number, j: number): number => rows[i]?.[j] ?? 0;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let distance = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) distance = Math.min(distance, at(i - 2, j - 2) + 1);
      (rows[i] as number[])[j] = distance;
    }
  }
  return at(a.length, b.length);
}

/** Operator-facing wording for zod's issues; schema-specific messages take precedence over it. */
const describeIssue: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.input === undefined) return 'is required';
      const hint = issue.expected === 'string' && ['number', 'boolean'].includes(typeof issue.input) ? '; put it in quotes' : '';
      return `expected ${expectedName(issue.expected)}, got ${valueName(issue.input)}${hint}`;
    }
    case 'too_small':
      if (issue.origin === 'array') return `must have at least ${String(issue.minimum)} item${issue.minimum === 1 ? '' : 's'}`;
      if (issue.origin === 'string') return issue.minimum === 1 ? 'must not be empty' : `must be at least ${String(issue.minimum)} characters`;
      return `must be at least ${String(issue.minimum)}`;
    case 'too_big':
      if (issue.origin === 'array') return `must have at most ${String(issue.maximum)} items`;
      if (issue.origin === 'string') return `must be at most ${String(issue.maximum)} characters`;
      return `must be at most ${String(issue.maximum)}`;
    case 'invalid_value':
      return issue.values.length === 1
        ? `must be ${String(issue.values[0])}`
        : `must be one of: ${issue.values.map(String).join(', ')}`;
    case 'invalid_union': {
      if (issue.discriminator === undefined) return 'is not any of the accepted forms';
      const options = 'options' in issue && Array.isArray(issue.options) ? issue.options.map(String).join(', ') : '';
      const input: unknown = issue.input;
      const present = typeof input === 'object' && input !== null && (input as Record<string, unknown>)[issue.discriminator] !== undefined;
      if (typeof input !== 'object' || input === null || Array.isArray(input)) return `expected a mapping, got ${valueName(input)}`;
      return present ? `must be one of: ${options}` : `is required: one of ${options}`;
    }
    case 'invalid_key':
      return issue.issues[0]?.message;
    default:
      return undefined;
  }
};

function expectedName(expected: string): string {
  switch (expected) {
    case 'string': return 'a string';
    case 'number': return 'a number';
    case 'int': return 'a whole number';
    case 'boolean': return 'true or false';
    case 'array': return 'a list';
    case 'object':
    case 'record': return 'a mapping';
    default: return expected;
  }
}

function valueName(value: unknown): string {
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  switch (typeof value) {
    case 'string': return 'a string';
    case 'number': return 'a number';
    case 'boolean': return `${String(value)}`;
    case 'object': return 'a mapping';
    default: return typeof value;
  }
}

function describeYamlError(error: YAMLError, text: string, lineCounter: LineCounter): ConfigProblem {
  const { line, col } = lineCounter.linePos(error.pos[0]);
  const lineText = text.split(/\r?\n/)[line - 1] ?? '';
  const hint = lineText.includes('${') && /[[{]/.test(lineText.replace(/\$\{[^}]*\}/g, ''))
    ? ' (inside { … } or [ … ], a ${VAR} reference must be quoted: "${VAR}")'
    : '';
  return { path: '', message: `YAML syntax error: ${error.message}${hint}`, line, column: col };
}

/** Where the value at `path` starts in the file or, for a key that is missing, where its parent does. */
function locate(document: Document, lineCounter: LineCounter, path: KeyPath): { line: number; column: number } | undefined {
  for (let length = path.length; length > 0; length--) {
    const node: unknown = document.getIn(path.slice(0, length), true);
    const range = typeof node === 'object' && node !== null && 'range' in node ? (node as { range?: unknown }).range : undefined;
    if (Array.isArray(range) && typeof range[0] === 'number') {
      const { line, col } = lineCounter.linePos(range[0]);
      return { line, column: col };
    }
  }
  return undefined;
}

function describeReadError(error: unknown): string {
  const code = typeof error === 'object' && error !== null && 'code' in error ? (error as { code?: unknown }).code : undefined;
  switch (code) {
    case 'ENOENT': return 'no such file';
    case 'EACCES': return 'permission denied';
    case 'EISDIR': return 'it is a directory';
    default: return error instanceof Error ? error.message : String(error);
  }
}

/** Freezes a value and everything reachable from it. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
