import type { KeyPath } from './config-error.ts';

/** The environment as `process.env` has it. */
export type Env = Readonly<Record<string, string | undefined>>;

/** A problem found before validation, located by key segments. */
export interface PathProblem {
  readonly path: KeyPath;
  readonly message: string;
}

const reference = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;

/**
 * Expands environment references in one string:
 *   `${NAME}`            the variable's value (empty if set to ''); an error if unset
 *   `${NAME:-fallback}`  the value, or `fallback` when the variable is unset or empty
 *   `$$`                 a literal `$`
 * Any other `$` is kept as it is. The result is always a string; the schema coerces it where a
 * number or boolean is expected. Returns every problem in the string, not just the first.
 */
export function expandString(text: string, env: Env): { value: string; problems: string[] } {
  const problems: string[] = [];
  let value = '';
  let index = 0;
  while (index < text.length) {
    const dollar = text.indexOf('$', index);
    if (dollar === -1 || dollar === text.length - 1) {
      value += text.slice(index);
      break;
    }
    value += text.slice(index, dollar);
    const next = text[dollar + 1];
    if (next === '$') {
      value += '$';
      index = dollar + 2;
      continue;
    }
    if (next !== '{') {
      value += '$';
      index = dollar + 1;
      continue;
    }
    const close = text.indexOf('}', dollar + 2);
    if (close === -1) {
      problems.push('"${" without a closing "}" (write $$ for a literal $)');
      break;
    }
    const inner = text.slice(dollar + 2, close);
    index = close + 1;
    const match = reference.exec(inner);
    if (match === null) {
      problems.push(`"\${${inner}}" is not a valid reference: use \${NAME} or \${NAME:-default}`);
      continue;
    }
    const name = match[1] as string;
    const fallback = match[2];
    const found = env[name];
    if (fallback !== undefined) value += found === undefined || found === '' ? fallback : found;
    else if (found !== undefined) value += found;
    else problems.push(`environment variable ${name} is not set`);
  }
  return { value, problems };
}

/**
 * Expands every string scalar of a parsed YAML document (mapping keys excepted), returning a new
 * value. Expanding per scalar, rather than the file's text, means a variable's value can never
 * change the document's structure, and a failure is reported at the key path where it appears.
 * A string that fails keeps its unexpanded text so that validation can go on with the rest.
 */
export function expandEnv(value: unknown, env: Env): { value: unknown; problems: PathProblem[] } {
  const problems: PathProblem[] = [];
  const ancestors = new Set<unknown>();
  const walk = (node: unknown, path: KeyPath): unknown => {
    if (typeof node === 'string') {
      const expanded = expandString(node, env);
      for (const message of expanded.problems) problems.push({ path, message });
      return expanded.problems.length === 0 ? expanded.value : node;
    }
    if (!Array.isArray(node) && !isPlainObject(node)) return node;
    if (ancestors.has(node)) {
      problems.push({ path, message: 'a YAML alias here refers to a collection that contains it' });
      return null;
    }
    ancestors.add(node);
    let copy: unknown;
    if (Array.isArray(node)) {
      copy = node.map((item: unknown, index) => walk(item, [...path, index]));
    } else {
      const mapping: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(node)) setOwn(mapping, key, walk(item, [...path, key]));
      copy = mapping;
    }
    ancestors.delete(node);
    return copy;
  };
  return { value: walk(value, []), problems };
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** Sets an own property, even one named `__proto__`, so no key can change an object's prototype. */
export function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}
