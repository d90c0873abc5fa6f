/**
 * A tool call's arguments as the audit trail may show them, for services that opt in
 * (`services.<name>.audit.tool_arguments`): secret-looking values and the configured keys
 * replaced by "[redacted]", and nothing over the configured size.
 *
 * Redaction applies at any depth, before the size is measured, so a secret is never written
 * even in part. Keys match without regard to case; arrays are passed through, so `items.token`
 * also names the `token` of every element of an `items` list.
 */

export const REDACTED = '[redacted]';

/**
 * Always redacted: any key whose name, lower-cased and without `_`, `-` and `.`, contains one of
 * these. Broad on purpose (it also catches `max_tokens`): an audit trail that shows a little less
 * is better than one that holds a credential.
 */
export const SECRET_KEY_PARTS = [
  'password', 'passwd', 'passphrase', 'secret', 'token', 'apikey', 'authorization', 'cookie', 'credential', 'privatekey', 'signature',
] as const;

export interface ArgumentRules {
  /** Key names (any depth) and dotted paths from the arguments' root, as configured. */
  redact: readonly string[];
  maxBytes: number;
}

/** Configured rules, compiled once per service. */
export interface CompiledRules {
  names: ReadonlySet<string>;
  paths: ReadonlyArray<readonly string[]>;
  maxBytes: number;
}

export function compileArgumentRules(rules: ArgumentRules): CompiledRules {
  const names = new Set<string>();
  const paths: string[][] = [];
  for (const entry of rules.redact) {
    const segments = entry.toLowerCase().split('.').filter((segment) => segment !== '');
    if (segments.length === 1) names.add(segments[0] as string);
    else if (segments.length > 1) paths.push(segments);
  }
  return { names, paths, maxBytes: rules.maxBytes };
}

export type AuditedArguments = { arguments: unknown } | { arguments_omitted: string };

/** The arguments redacted, or why they are left out. */
export function auditedArguments(value: unknown, rules: CompiledRules): AuditedArguments {
  const redacted = redact(value, [], rules);
  const text = JSON.stringify(redacted) ?? 'null';
  const bytes = Buffer.byteLength(text);
  if (bytes > rules.maxBytes) return { arguments_omitted: `${bytes} bytes, over ${rules.maxBytes}` };
  return { arguments: redacted };
}

function redact(value: unknown, path: readonly string[], rules: CompiledRules): unknown {
  if (Array.isArray(value)) return value.map((item) => redact(item, path, rules));
  if (value === null || typeof value !== 'object') return value;
  // No prototype: a "__proto__" key in the arguments stays a plain key.
  const copy: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const [key, inner] of Object.entries(value)) {
    const lower = key.toLowerCase();
    const at = [...path, lower];
    copy[key] = isSecretKey(lower) || rules.names.has(lower) || rules.paths.some((rule) => samePath(rule, at))
      ? REDACTED
      : redact(inner, at, rules);
  }
  return copy;
}

function isSecretKey(lower: string): boolean {
  const bare = lower.replace(/[-_.\s]/g, '');
  return SECRET_KEY_PARTS.some((part) => bare.includes(part));
}

function samePath(rule: readonly string[], at: readonly string[]): boolean {
  return rule.length === at.length && rule.every((segment, index) => segment === at[index]);
}
