/**
 * Response headers that harden the gateway's own pages and JSON responses.
 *
 * HTML pages (sign-in, consent, errors) get a Content-Security-Policy that allows no script at
 * all, exactly one inline stylesheet (by hash), images from https/data (provider icons), form
 * posts to the gateway itself plus the origins the caller names, and no framing (clickjacking
 * on a consent screen is the classic OAuth attack, RFC 6819 §4.4.1.9).
 */

export interface HtmlSecurityOptions {
  /** The CSP hash source of the page stylesheet, `sha256-…` without quotes (`STYLE_HASH`). */
  styleHash: string;
  /** The gateway is served over https: adds Strict-Transport-Security. */
  https: boolean;
  /**
   * Extra `form-action` sources besides 'self', e.g. `https://claude.ai` or `cursor:`
   * (build them with `formActionSource`). Chrome applies `form-action` to every redirect that
   * follows a form submission, so when a form post on this page may end in a 303 to the
   * client's redirect URI (consent, and dev sign-in with consent already remembered), the CSP
   * of the page holding the form must list that redirect's origin or scheme. It is the policy
   * of the document that submits the form that counts, not that of the POST's response.
   */
  formAction?: readonly string[];
}

const hashSource = /^sha(256|384|512)-[A-Za-z0-9+/]+={0,2}$/;
const schemeSource = /^[a-z][a-z0-9+.-]*:$/i;
const hostSource = /^(https?|wss?):\/\/(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:(\d{1,5}|\*))?$/i;
/** Schemes a form must never be allowed to target, whatever a client registered. */
const forbiddenSchemes = new Set(['javascript:', 'data:', 'blob:', 'filesystem:', 'file:', 'about:']);

function isAllowedSource(source: string): boolean {
  if (schemeSource.test(source)) return !forbiddenSchemes.has(source.toLowerCase());
  return hostSource.test(source);
}

/**
 * The `form-action` source that lets a form navigation end at `redirectUri`: its origin for
 * http(s) (`https://claude.ai`, `http://127.0.0.1:33418`), its scheme for an app link
 * (`cursor:`, `vscode:`). An IPv6 literal host yields its scheme (`http:`), since CSP host
 * sources cannot express IPv6 addresses. `undefined` for a URI that is unparsable or whose
 * scheme may never be a form target.
 */
export function formActionSource(redirectUri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(redirectUri);
  } catch {
    return undefined;
  }
  const web = url.protocol === 'http:' || url.protocol === 'https:';
  const source = web && !url.hostname.startsWith('[') ? url.origin : url.protocol;
  return isAllowedSource(source) ? source : undefined;
}

/**
 * Headers for an HTML page. Throws `TypeError` when `styleHash` or a `formAction` entry is
 * not a well-formed CSP source, so nothing from a client can inject CSP directives.
 */
export function securityHeaders({ styleHash, https, formAction = [] }: HtmlSecurityOptions): Record<string, string> {
  if (!hashSource.test(styleHash)) throw new TypeError('styleHash must be a CSP hash source such as sha256-…');
  for (const source of formAction) {
    if (!isAllowedSource(source)) throw new TypeError(`not an allowed form-action source: ${JSON.stringify(source)}`);
  }
  const formTargets = ["'self'", ...new Set(formAction)].join(' ');
  const csp = [
    "default-src 'none'",
    `style-src '${styleHash}'`,
    "img-src 'self' https: data:",
    `form-action ${formTargets}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
  const headers: Record<string, string> = {
    'Content-Security-Policy': csp,
    'X-Frame-Options': 'DENY',
    'X-Content-Type-Options': 'nosniff',
    // Keeps authorization-request parameters out of icon fetches and outbound links. Note that
    // browsers then send `Origin: null` with these pages' form posts: CSRF rests on the token.
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cache-Control': 'no-store',
    'Permissions-Policy': 'camera=(), microphone=(), geolocation=()',
  };
  // Only over https: browsers ignore HSTS received over http, and a loopback dev gateway must
  // not pin https on localhost for every other local app.
  if (https) headers['Strict-Transport-Security'] = 'max-age=31536000';
  return headers;
}

/**
 * Headers for a JSON response. `cacheable` leaves Cache-Control to the caller (discovery
 * metadata, JWKS); everything else is `no-store` (tokens, registrations: RFC 6749 §5.1).
 */
export function apiSecurityHeaders({ cacheable = false }: { cacheable?: boolean } = {}): Record<string, string> {
  const headers: Record<string, string> = {
    'X-Content-Type-Options': 'nosniff',
    // A JSON body opened as a document can run nothing and cannot be framed.
    'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  };
  if (!cacheable) headers['Cache-Control'] = 'no-store';
  return headers;
}
