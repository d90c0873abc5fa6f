import { Buffer } from 'node:buffer';
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';

/*
 * The configuration schema's shared building blocks: value rules, error wording, and the small
 * schemas every section uses (text, whole numbers, flags, lists, URLs, header names, scope
 * tokens, toggles). Values that came from `${VAR}` expansion are strings, so numbers and
 * booleans accept their text form.
 */

// ---------------------------------------------------------------------------------------------
// Value rules

/** True for `localhost`, 127.0.0.0/8 and ::1 (also in brackets, as URL host names carry it). */
export function isLoopbackHost(host: string): boolean {
  const name = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (name === 'localhost' || name === 'localhost.') return true;
  if (isIPv4(name)) return name.startsWith('127.');
  if (isIPv6(name)) return new URL(`http://[${name}]/`).hostname === '[::1]';
  return false;
}

const keyHint = 'Make one with: openssl rand -base64 32';

/** Why a string is not 32 bytes in base64 or base64url, or undefined. Never repeats the value. */
function encryptionKeyProblem(value: string): string | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) && !/^[A-Za-z0-9_-]*={0,2}$/.test(value)) {
    return `must be 32 random bytes in base64 or base64url, and this is not base64. ${keyHint}`;
  }
  const bytes = Buffer.from(value, 'base64').length;
  if (bytes !== 32 || value.replace(/=+$/, '').length !== 43) {
    return `must be 32 random bytes in base64 or base64url, but it decodes to ${bytes} bytes. ${keyHint}`;
  }
  return undefined;
}

/** Why a URL is not usable as the gateway's public origin, or undefined. */
function publicUrlProblem(text: string, url: URL): string | undefined {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an https:// URL';
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return 'must use https; plain http is allowed only on a loopback host (localhost, 127.0.0.1, ::1)';
  }
  if (url.username !== '' || url.password !== '') return 'must not contain a user name or password';
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || /[?#]/.test(text)) {
    return `must be an origin only, such as ${url.origin}, without a path, query or fragment: the gateway serves its endpoints at the root`;
  }
  return undefined;
}

/** Why a URL is not usable as an upstream identity provider's issuer, or undefined. */
export function issuerProblem(text: string, url: URL): string | undefined {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an https:// URL';
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return 'must use https; plain http is allowed only on a loopback host (a local test identity provider)';
  }
  if (url.search !== '' || url.hash !== '' || /[?#]/.test(text)) return 'must not have a query or fragment';
  return undefined;
}

/** Headers that HTTP or the gateway itself controls: never set from a forward rule. */
const protectedHeaders = new Set([
  'host', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'proxy-connection', 'content-length', 'content-type', 'cookie',
  'mcp-session-id', 'mcp-protocol-version',
]);

/** A DNS host name, optionally fully qualified with a trailing dot. */
export const hostName = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/;

// ---------------------------------------------------------------------------------------------
// Building blocks

type ErrorMap = z.core.$ZodErrorMap;

/** A message for every issue of a schema except a missing value, which keeps the generic "is required". */
function unlessMissing(message: string): ErrorMap {
  return (issue) => (issue.code === 'invalid_type' && issue.input === undefined ? undefined : message);
}

/** A message for a value of the wrong type (not for a missing one, nor for problems inside it). */
export function wrongType(message: string): ErrorMap {
  return (issue) => (issue.code === 'invalid_type' && issue.input !== undefined ? message : undefined);
}

/** Runs a refinement even when other parts of the value failed, so every problem is reported at once. */
export const always = { when: () => true };

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function numberFromText(value: unknown): unknown {
  return typeof value === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;
}

export function booleanFromText(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const text = value.trim().toLowerCase();
  return text === 'true' ? true : text === 'false' ? false : value;
}

export function integer(min: number, max: number) {
  const message = `must be a whole number from ${min} to ${max}`;
  return z.preprocess(numberFromText, z.number({ error: unlessMissing(message) }).int().min(min).max(max));
}

export function flag() {
  return z.preprocess(booleanFromText, z.boolean({ error: unlessMissing('must be true or false') }));
}

export const text = z.string().min(1, { error: 'must not be empty' });

export const slug = z.string().regex(/^[a-z0-9-]+$/, { error: 'must be lower-case letters, digits and "-"' });

export const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, {
  error: 'must be an HTTP header name such as X-User-Id',
}).refine((name) => !protectedHeaders.has(name.toLowerCase()), {
  error: 'is a header that HTTP or the gateway itself controls; choose another name',
});

export const scopeToken = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, {
  error: 'must be a scope name: printable characters without spaces, quotes or backslashes',
});

export function url(check: (text: string, url: URL) => string | undefined, example: string) {
  return z.string().superRefine((value, ctx) => {
    const parsed = URL.canParse(value) ? new URL(value) : undefined;
    const problem = parsed === undefined ? `must be a URL such as ${example}` : check(value, parsed);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: value });
  });
}

export const publicUrl = url(publicUrlProblem, 'https://mcp.example.com').transform((value) => `${new URL(value).origin}/`);

export const issuerUrl = url(issuerProblem, 'https://accounts.example.com');

/** An MCP server's address: http(s) for Streamable HTTP and legacy SSE, ws(s) for WebSocket. */
export const upstreamUrl = url(
  (_, parsed) => (['http:', 'https:', 'ws:', 'wss:'].includes(parsed.protocol) ? undefined : 'must be an http:// or https:// URL (ws:// or wss:// for a WebSocket server)'),
  'http://127.0.0.1:3001/mcp',
);

export const iconUrl = url(
  (_, parsed) => (['http:', 'https:', 'data:'].includes(parsed.protocol) ? undefined : 'must be an https:// or data: URL'),
  'https://example.com/logo.svg',
);

export const redirectUri = url(
  (value) => (value.includes('#') ? 'must not have a fragment' : undefined),
  'https://app.example.com/callback',
);

export const encryptionKey = z.string().superRefine((value, ctx) => {
  const problem = encryptionKeyProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: value });
});

export function list<T extends z.ZodType>(item: T) {
  return z.array(item).default(() => []);
}

/** Rejects repeated values of `key` among the array's items, at the repeat's own path. */
export function uniqueBy(key: string, what: string) {
  return (items: unknown, ctx: z.core.$RefinementCtx<unknown>) => {
    if (!Array.isArray(items)) return;
    const seen = new Map<unknown, number>();
    items.forEach((item: unknown, index) => {
      const value = isRecord(item) ? item[key] : undefined;
      if (typeof value !== 'string') return;
      const first = seen.get(value);
      if (first === undefined) seen.set(value, index);
      else ctx.addIssue({ code: 'custom', path: [index, key], message: `${what} "${value}" is already used by item [${first}]`, input: value });
    });
  };
}

/** `true` (or absent, when on by default) selects the defaults, `false` turns the feature off (null). */
export function toggle(onByDefault: boolean) {
  return (value: unknown): unknown => {
    const resolved = value === undefined ? onByDefault : booleanFromText(value);
    return resolved === true ? {} : resolved === false ? null : resolved;
  };
}
