/**
 * Renders a Helm chart's templates for tests: with `helm template` when helm is installed, and
 * otherwise with a small stand-in for the part of Go templates and Helm's functions that
 * deploy/helm/gatehouse uses. (Debian bookworm has no helm package, so the stand-in is what runs
 * here and in CI.)
 *
 * The stand-in is strict where Helm is lenient: a field that does not exist (a typo in
 * `.Values.…`) or a construct it does not know is an error, not `<no value>`. Supported:
 * `{{- … -}}` trimming, comments, `define`/`include`, `if`/`else`/`end` (conditions may use
 * `not`, `and`, `or`), pipelines and parenthesised calls, and the functions `default`,
 * `required`, `quote`, `toYaml`, `indent`, `nindent`, `printf`, `print`, `trunc`, `trimSuffix`,
 * `sha256sum`, `b64enc`. `with` and `range` are not: the chart does without them.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

export interface RenderedChart {
  /** Which renderer produced it. */
  renderer: 'helm' | 'stand-in';
  /** Rendered text per template file name (helm: per source, as `# Source:` says). */
  files: Map<string, string>;
}

/** Whether a `helm` binary is on PATH. */
export function helmAvailable(): boolean {
  return spawnSync('helm', ['version', '--short'], { stdio: 'ignore' }).status === 0;
}

/** Deep-merges `override` into `base` (mappings merge, everything else replaces), as `-f`/`--set` do. */
function merge(base: unknown, override: unknown): unknown {
  if (!isMapping(base) || !isMapping(override)) return override;
  const result: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) result[key] = key in base ? merge(base[key], value) : value;
  return result;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Renders `chartDir` with its values.yaml plus `values`, as release `release`. */
export function renderChart(chartDir: string, values: Record<string, unknown>, release = 'test', useHelm = helmAvailable()): RenderedChart {
  if (useHelm) {
    const output = execFileSync('helm', ['template', release, chartDir, '--namespace', 'default', '-f', '-'], { input: stringifyYaml(values), encoding: 'utf8' });
    const files = new Map<string, string>();
    for (const part of output.split(/^---\n/m)) {
      const source = /^# Source: [^/]+\/templates\/(.+)$/m.exec(part)?.[1];
      if (source) files.set(source, `${files.get(source) ?? ''}${part}`);
    }
    return { renderer: 'helm', files };
  }
  const chart = parseYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as { name: string; version: string; appVersion: string };
  const context = {
    Values: merge(parseYaml(readFileSync(join(chartDir, 'values.yaml'), 'utf8')), values),
    Release: { Name: release, Namespace: 'default', Service: 'Helm' },
    Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion },
  };
  const templateDir = join(chartDir, 'templates');
  const names = readdirSync(templateDir).sort();
  const defines = new Map<string, Node[]>();
  const parsed = new Map(names.map((name) => [name, parse(readFileSync(join(templateDir, name), 'utf8'), name, defines)]));
  const files = new Map<string, string>();
  for (const [name, nodes] of parsed) {
    if (name.startsWith('_')) continue;
    files.set(name, evaluate(nodes, context, defines));
  }
  return { renderer: 'stand-in', files };
}

// ---------------------------------------------------------------------------------------------
// Parsing: text and actions, with Go's trim markers applied, into a tree of if/else and define.

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; expression: string }
  | { kind: 'if'; condition: string; then: Node[]; else: Node[] };

function parse(source: string, file: string, defines: Map<string, Node[]>): Node[] {
  const pieces: Array<{ text: string } | { action: string }> = [];
  const pattern = /\{\{(-?)\s*([\s\S]*?)\s*(-?)\}\}/g;
  let last = 0;
  let trimNext = false;
  for (let match = pattern.exec(source); match; match = pattern.exec(source)) {
    let text = source.slice(last, match.index);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (match[1] === '-') text = text.replace(/\s+$/, '');
    pieces.push({ text });
    const action = match[2] ?? '';
    if (!action.startsWith('/*')) pieces.push({ action });
    trimNext = match[3] === '-';
    last = match.index + match[0].length;
  }
  pieces.push({ text: trimNext ? source.slice(last).replace(/^\s+/, '') : source.slice(last) });

  const root: Node[] = [];
  const stack: Array<{ nodes: Node[]; close: (children: Node[]) => void; node?: Extract<Node, { kind: 'if' }>; inElse?: boolean }> = [];
  let current = root;
  for (const piece of pieces) {
    if ('text' in piece) {
      if (piece.text !== '') current.push({ kind: 'text', text: piece.text });
      continue;
    }
    const [keyword = '', ...rest] = piece.action.split(/\s+/);
    const argument = rest.join(' ');
    if (keyword === 'define') {
      const name = JSON.parse(argument) as string;
      const body: Node[] = [];
      stack.push({ nodes: current, close: (children) => defines.set(name, children) });
      current = body;
    } else if (keyword === 'if') {
      const node: Extract<Node, { kind: 'if' }> = { kind: 'if', condition: argument, then: [], else: [] };
      current.push(node);
      stack.push({ nodes: current, close: () => undefined, node, inElse: false });
      current = node.then;
    } else if (keyword === 'else') {
      const top = stack.at(-1);
      if (!top?.node || top.inElse) throw new Error(`${file}: else outside if`);
      if (argument !== '') throw new Error(`${file}: "else ${argument}" is not supported by the stand-in`);
      top.inElse = true;
      current = top.node.else;
    } else if (keyword === 'end') {
      const top = stack.pop();
      if (!top) throw new Error(`${file}: end without a block`);
      top.close(current);
      current = top.nodes;
    } else if (['with', 'range', 'block', 'template', 'tpl'].includes(keyword) || piece.action.includes(':=')) {
      throw new Error(`${file}: "${piece.action}" is not supported by the stand-in (install helm, or extend test/support/helm-template.ts)`);
    } else {
      current.push({ kind: 'action', expression: piece.action });
    }
  }
  if (stack.length > 0) throw new Error(`${file}: a block is not closed with end`);
  return root;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

function evaluate(nodes: Node[], dot: unknown, defines: Map<string, Node[]>): string {
  let out = '';
  for (const node of nodes) {
    if (node.kind === 'text') out += node.text;
    else if (node.kind === 'action') out += show(pipeline(node.expression, dot, defines));
    else out += evaluate(truthy(pipeline(node.condition, dot, defines)) ? node.then : node.else, dot, defines);
  }
  return out;
}

function truthy(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (isMapping(value)) return Object.keys(value).length > 0;
  return value !== undefined && value !== null && value !== false && value !== 0 && value !== '';
}

function show(value: unknown): string {
  if (value === undefined || value === null) throw new Error('a template printed no value');
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** Splits an expression into terms: strings, numbers, fields, identifiers, `|`, and parenthesised groups. */
function tokens(expression: string): string[] {
  const result: string[] = [];
  const pattern = /\s*("(?:[^"\\]|\\.)*"|\(|\)|\||[^\s()|]+)/gy;
  for (let match = pattern.exec(expression); match; match = pattern.exec(expression)) result.push(match[1] ?? '');
  if (result.join('').replace(/\s/g, '') !== expression.replace(/\s/g, '')) throw new Error(`cannot read "${expression}"`);
  return result;
}

function pipeline(expression: string, dot: unknown, defines: Map<string, Node[]>): unknown {
  return runPipeline(tokens(expression), dot, defines);
}

function runPipeline(terms: string[], dot: unknown, defines: Map<string, Node[]>): unknown {
  // Split at top-level pipes.
  const commands: string[][] = [[]];
  let depth = 0;
  for (const term of terms) {
    if (term === '(') depth++;
    if (term === ')') depth--;
    if (term === '|' && depth === 0) commands.push([]);
    else commands.at(-1)?.push(term);
  }
  let value: unknown;
  commands.forEach((command, index) => {
    value = runCommand(command, dot, defines, index === 0 ? [] : [value]);
  });
  return value;
}

function runCommand(terms: string[], dot: unknown, defines: Map<string, Node[]>, piped: unknown[]): unknown {
  const args: unknown[] = [];
  let name: string | undefined;
  for (let index = 0; index < terms.length; index++) {
    const term = terms[index] ?? '';
    if (term === '(') {
      let depth = 1;
      let end = index + 1;
      for (; end < terms.length && depth > 0; end++) {
        if (terms[end] === '(') depth++;
        if (terms[end] === ')') depth--;
      }
      args.push(runPipeline(terms.slice(index + 1, end - 1), dot, defines));
      index = end - 1;
    } else if (index === 0 && /^[a-z][A-Za-z0-9]*$/.test(term)) {
      name = term;
    } else {
      args.push(value(term, dot));
    }
  }
  const all = [...args, ...piped];
  if (name === undefined) {
    if (all.length !== 1) throw new Error(`"${terms.join(' ')}" is not a function call`);
    return all[0];
  }
  return call(name, all, defines);
}

function value(term: string, dot: unknown): unknown {
  if (term.startsWith('"')) return JSON.parse(term) as string;
  if (/^-?\d+$/.test(term)) return Number(term);
  if (term === 'true' || term === 'false') return term === 'true';
  if (term === '.' || term === '$') return dot;
  if (!/^\$?(\.[A-Za-z_][A-Za-z0-9_]*)+$/.test(term)) throw new Error(`unknown term ${term}`);
  let current = dot;
  for (const field of term.replace(/^\$/, '').slice(1).split('.')) {
    if (!isMapping(current) || !(field in current)) throw new Error(`no value at ${term}`);
    current = current[field];
  }
  return current;
}

function toYaml(value: unknown): string {
  if (isMapping(value) && Object.keys(value).length === 0) return '{}';
  if (Array.isArray(value) && value.length === 0) return '[]';
  return stringifyYaml(value, { lineWidth: 0 }).replace(/\n$/, '');
}

function indent(width: number, text: string): string {
  return text.split('\n').map((line) => `${' '.repeat(width)}${line}`).join('\n');
}

function call(name: string, args: unknown[], defines: Map<string, Node[]>): unknown {
  const text = (index: number) => String(args[index] ?? '');
  switch (name) {
    case 'include': {
      const body = defines.get(text(0));
      if (!body) throw new Error(`include of an undefined template ${text(0)}`);
      return evaluate(body, args[1], defines);
    }
    case 'default': return truthy(args[1]) ? args[1] : args[0];
    case 'required':
      if (!truthy(args[1])) throw new Error(text(0));
      return args[1];
    case 'quote': return JSON.stringify(text(0));
    case 'toYaml': return toYaml(args[0]);
    case 'indent': return indent(Number(args[0]), text(1));
    case 'nindent': return `\n${indent(Number(args[0]), text(1))}`;
    case 'printf': {
      let position = 1;
      return text(0).replace(/%[sdv]/g, () => String(args[position++]));
    }
    case 'print': return args.map(String).join('');
    case 'trunc': return text(1).slice(0, Number(args[0]));
    case 'trimSuffix': return text(1).endsWith(text(0)) ? text(1).slice(0, -text(0).length || undefined) : text(1);
    case 'sha256sum': return createHash('sha256').update(text(0)).digest('hex');
    case 'b64enc': return Buffer.from(text(0)).toString('base64');
    case 'not': return !truthy(args[0]);
    case 'and': return args.every(truthy) ? args.at(-1) : args.find((arg) => !truthy(arg));
    case 'or': return args.find(truthy) ?? args.at(-1);
    default: throw new Error(`the function ${name} is not supported by the stand-in (install helm, or extend test/support/helm-template.ts)`);
  }
}
