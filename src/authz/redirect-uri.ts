/**
 * Redirect URI rules for registered and metadata-document clients.
 *
 * Accepted (MCP authorization "Communication Security"; RFC 8252 §7; checklist §4b):
 * - https URIs (hosted clients: claude.ai, chatgpt.com, vscode.dev, www.cursor.com …);
 * - http URIs on a loopback host (127.0.0.0/8, [::1], localhost) for native clients;
 * - private-use schemes such as `cursor://…` or `vscode://…` (RFC 8252 §7.1).
 * Refused: other http hosts, script and local-content schemes, fragments, wildcards,
 * credentials in the URI.
 */

const REFUSED_SCHEMES = new Set(['javascript:', 'data:', 'file:', 'vbscript:', 'blob:', 'about:', 'filesystem:']);

export type RedirectUriKind = 'https' | 'loopback' | 'private-use';

export type RedirectUriCheck = { ok: true; kind: RedirectUriKind } | { ok: false; reason: string };

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

/** Whether `value` may be registered as a redirect URI, and which kind it is. */
export function checkRedirectUri(value: unknown): RedirectUriCheck {
  if (typeof value !== 'string' || value.length === 0) return { ok: false, reason: 'must be a non-empty string' };
  if (value.length > 2000) return { ok: false, reason: 'is too long' };
  if (value.includes('#')) return { ok: false, reason: 'must not contain a fragment' };
  if (value.includes('*')) return { ok: false, reason: 'must not contain wildcards' };
  const url = URL.parse(value);
  if (!url) return { ok: false, reason: 'is not a valid absolute URI' };
  if (REFUSED_SCHEMES.has(url.protocol)) return { ok: false, reason: `must not use the ${url.protocol.slice(0, -1)} scheme` };
  if (url.username || url.password) return { ok: false, reason: 'must not contain user information' };
  if (url.protocol === 'https:') return { ok: true, kind: 'https' };
  if (url.protocol === 'http:') {
    return isLoopbackHost(url.hostname)
      ? { ok: true, kind: 'loopback' }
      : { ok: false, reason: 'may use http only on a loopback address (127.0.0.1, [::1] or localhost)' };
  }
  // RFC 8252 §7.1: private-use schemes; reverse-domain names are recommended but clients in
  // the wild (cursor://) use short ones, so any other syntactically valid scheme is accepted.
  return /^[a-z][a-z0-9+.-]*:$/i.test(url.protocol)
    ? { ok: true, kind: 'private-use' }
    : { ok: false, reason: 'has an invalid scheme' };
}

/** The URI with the port of a loopback http URI removed, or `undefined` if it is not one. */
function withoutLoopbackPort(value: string): string | undefined {
  const url = URL.parse(value);
  if (!url || url.protocol !== 'http:' || !isLoopbackHost(url.hostname)) return undefined;
  url.port = '';
  return url.href;
}

/**
 * Whether the redirect URI of an authorization request matches one of the registered ones:
 * exactly, except that loopback http URIs match on any port (RFC 8252 §7.3, OAuth 2.1
 * §2.3.1). Scheme, host, path and query must still match; `localhost` and `127.0.0.1` are
 * different hosts.
 */
export function redirectUriMatches(requested: string, registered: readonly string[]): boolean {
  if (registered.includes(requested)) return true;
  const stripped = withoutLoopbackPort(requested);
  if (stripped === undefined) return false;
  return registered.some((uri) => withoutLoopbackPort(uri) === stripped);
}

/** Whether every URI is on the user's own machine (loopback or a private-use scheme). */
export function isLocalOnly(uris: readonly string[]): boolean {
  return uris.length > 0 && uris.every((uri) => checkRedirectUri(uri).ok && !uri.startsWith('https:'));
}
