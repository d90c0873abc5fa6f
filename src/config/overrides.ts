import { isMap, isScalar, isSeq, parseDocument, Scalar } from 'yaml';
import { formatKeyPath, type KeyPath } from './config-error.ts';
import { isPlainObject, setOwn, type Env, type PathProblem } from './expand.ts';

const prefix = 'GATEHOUSE_';

/** One `GATEHOUSE_<PATH>` variable that applies to the configuration. */
export interface Override {
  /** The variable's name, for messages. */
  readonly variable: string;
  /** Lower-cased path segments, still all strings: whether `0` is an index depends on the document. */
  readonly segments: readonly string[];
  readonly text: string;
}

/**
 * The `GATEHOUSE_*` variables that address the configuration: the name after the prefix, split
 * on `__` and lower-cased, must start with a top-level key. Others (`GATEHOUSE_CONFIG`,
 * `GATEHOUSE_ENCRYPTION_KEY` used through `${…}`) are not overrides. Shorter paths come first,
 * so `GATEHOUSE_LISTEN__PORT` refines what `GATEHOUSE_LISTEN` set.
 */
export function readOverrides(env: Env, topLevelKeys: readonly string[]): Override[] {
  const overrides: Override[] = [];
  for (const [variable, text] of Object.entries(env)) {
    if (!variable.startsWith(prefix) || text === undefined) continue;
    const segments = variable.slice(prefix.length).toLowerCase().split('__');
    if (!topLevelKeys.includes(segments[0] ?? '')) continue;
    overrides.push({ variable, segments, text });
  }
  return overrides.sort((a, b) => a.segments.length - b.segments.length || a.variable.localeCompare(b.variable));
}

/** What the schema expects at a path, so an override can be read the way that key needs. */
export interface OverrideTarget {
  /** The value there is text: take the variable verbatim, not as YAML. */
  takesText(path: KeyPath, document: unknown): boolean;
  /** The value there is a list: a numeric segment below it is an index. */
  isList(path: KeyPath, document: unknown): boolean;
}

export interface AppliedOverrides {
  readonly value: unknown;
  readonly problems: PathProblem[];
  /** Formatted key path → the variable that set it. */
  readonly sources: Map<string, string>;
}

/**
 * Applies overrides to a copy of `document`, creating mappings and lists on the way as needed.
 * A value is read as a YAML flow scalar (`8080` a number, `true` a boolean, `[a, b]` a list,
 * `"8080"` a string, `null` removes the key so its default applies), except where the schema
 * expects text: there it is taken verbatim, so a secret containing `#` or `: ` survives.
 */
export function applyOverrides(document: unknown, overrides: readonly Override[], target: OverrideTarget): AppliedOverrides {
  const applicable = isPlainObject(document) || document === undefined || document === null;
  if (overrides.length === 0 || !applicable) return { value: document, problems: [], sources: new Map() };
  const root: Record<string, unknown> = isPlainObject(document) ? structuredClone(document) : {};
  const problems: PathProblem[] = [];
  const sources = new Map<string, string>();

  for (const { variable, segments, text } of overrides) {
    if (segments.some((segment) => segment === '')) {
      problems.push({ path: [], message: `${variable}: the name has an empty segment (three or more underscores in a row)` });
      continue;
    }
    const path: Array<string | number> = [];
    let container: Record<string, unknown> | unknown[] = root;
    let failed = false;
    for (const [position, segment] of segments.entries()) {
      const key = resolveSegment(container, segment);
      if (key === undefined) {
        problems.push({ path: [...path], message: `${variable}: this is a list, so "${segment}" must be an index (0, 1, …)` });
        failed = true;
        break;
      }
      if (typeof key === 'number' && Array.isArray(container) && key > container.length) {
        problems.push({ path: [...path, key], message: `${variable}: index ${key} is past the end of the list, which has ${container.length} item${container.length === 1 ? '' : 's'} (indexes count from 0)` });
        failed = true;
        break;
      }
      path.push(key);
      if (position === segments.length - 1) break;
      const existing = readKey(container, key);
      if (isPlainObject(existing) || Array.isArray(existing)) {
        container = existing;
      } else {
        const created: Record<string, unknown> | unknown[] = target.isList(path, root) ? [] : {};
        writeKey(container, key, created);
        container = created;
      }
    }
    if (failed) continue;
    const leaf = path[path.length - 1] as string | number;
    const value = target.takesText(path, root) ? text : parseFlowScalar(text);
    if (value === null) deleteKey(container, leaf);
    else writeKey(container, leaf, value);
    sources.set(formatKeyPath(path), variable);
  }
  return { value: root, problems, sources };
}

/** A segment is an index in a list, a key in a mapping; undefined if a list gets a non-number. */
function resolveSegment(container: Record<string, unknown> | unknown[], segment: string): string | number | undefined {
  if (!Array.isArray(container)) return segment;
  return /^\d+$/.test(segment) ? Number(segment) : undefined;
}

function readKey(container: Record<string, unknown> | unknown[], key: string | number): unknown {
  if (Array.isArray(container)) return container[Number(key)];
  return Object.hasOwn(container, key) ? container[key] : undefined;
}

function writeKey(container: Record<string, unknown> | unknown[], key: string | number, value: unknown): void {
  if (Array.isArray(container)) container[Number(key)] = value;
  else setOwn(container, String(key), value);
}

function deleteKey(container: Record<string, unknown> | unknown[], key: string | number): void {
  if (Array.isArray(container)) container[Number(key)] = undefined;
  else delete container[String(key)];
}

/**
 * Reads a variable's text as YAML: a plain or quoted scalar, or a flow list or mapping
 * (`[a, b]`, `{ a: 1 }`). Anything else, including text that is not valid YAML, stays the
 * text it was. Returns null for `null` or `~`.
 */
export function parseFlowScalar(text: string): unknown {
  if (text.trim() === '') return text;
  const document = parseDocument(text, { prettyErrors: false });
  if (document.errors.length > 0) return text;
  const node = document.contents;
  if (isScalar(node) && node.anchor === undefined && node.tag === undefined) {
    const quoted = node.type === Scalar.QUOTE_DOUBLE || node.type === Scalar.QUOTE_SINGLE;
    if (quoted || typeof node.value !== 'string') return document.toJS() as unknown;
    return text;
  }
  if ((isSeq(node) || isMap(node)) && node.flow === true) return document.toJS() as unknown;
  return text;
}
