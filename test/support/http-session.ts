/**
 * A minimal browser stand-in for tests: a cookie jar around `fetch`, manual redirect
 * following, and HTML form submission. Enough to drive OAuth/OIDC front-channel flows
 * (authorize → login page → consent page → redirect back) without a real browser.
 *
 * Cookies are kept per origin (scheme + host + port) and are host-only: `Domain` is
 * ignored, `Path` is honoured (RFC 6265 §5.1.4 path-match), `Expires`/`Max-Age` delete or
 * expire them. Real browsers share cookies across ports of one host; this jar does not.
 */

export interface FollowOptions {
  /** Checked on every redirect target before it is requested; true stops there. */
  stopWhen?: (url: URL) => boolean;
  /** Most redirects to follow before giving up with an error. */
  max?: number;
}

export interface FollowResult {
  /**
   * The last response received: a non-redirect response, or the redirect whose target
   * satisfied `stopWhen` (its body is left unread).
   */
  response: Response;
  /** The URL of `response` when it is not a redirect; otherwise the redirect's target, not requested. */
  url: URL;
  /** Every URL requested, in order. */
  visited: URL[];
}

export interface FormSelector {
  /** Matches the raw `action` attribute, or the resolved action URL (href or pathname). */
  action?: string;
  /** Which of the matching forms, 0 by default. */
  index?: number;
}

export interface HtmlForm {
  method: 'GET' | 'POST';
  /** Resolved against the page URL; the page itself when the form has no action. */
  action: URL;
  /** Raw `action` attribute, if present. */
  rawAction: string | undefined;
  /** Hidden inputs as name/value pairs, in document order. */
  hidden: Array<[string, string]>;
  /** Names of every input, button, select and textarea in the form. */
  fieldNames: string[];
}

interface StoredCookie {
  name: string;
  value: string;
  path: string;
  /** Epoch ms; undefined for a session cookie. */
  expiresAt: number | undefined;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export class HttpSession {
  readonly #jar = new Map<string, StoredCookie[]>();

  /** `fetch` with this session's cookies sent and stored; redirects are never followed. */
  async fetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const target = new URL(url);
    const headers = new Headers(init.headers);
    const cookieHeader = this.cookieHeader(target);
    if (cookieHeader) {
      const existing = headers.get('cookie');
      headers.set('cookie', existing ? `${existing}; ${cookieHeader}` : cookieHeader);
    }
    const response = await fetch(target, { ...init, headers, redirect: 'manual' });
    this.storeCookies(target, response.headers.getSetCookie());
    return response;
  }

  /**
   * Requests `url` and follows 301/302/303/307/308 redirects. A 303, and a 301/302 answering
   * a POST, continue as GET without a body (as browsers do); 307/308 repeat the method and
   * body. Request headers from `init` are kept only while the method and origin stay the same.
   */
  async follow(url: string | URL, init: RequestInit = {}, options: FollowOptions = {}): Promise<FollowResult> {
    const { stopWhen, max = 20 } = options;
    let current = new URL(url);
    let currentInit: RequestInit = init;
    const visited: URL[] = [];
    for (let hops = 0; ; hops++) {
      visited.push(current);
      const response = await this.fetch(current, currentInit);
      const location = response.headers.get('location');
      if (!REDIRECT_STATUSES.has(response.status) || location === null) {
        return { response, url: current, visited };
      }
      const next = new URL(location, current);
      if (stopWhen?.(next)) {
        return { response, url: next, visited };
      }
      if (hops >= max) {
        throw new Error(`more than ${max} redirects, last to ${next.href}`);
      }
      await response.body?.cancel();
      currentInit = redirectInit(currentInit, response.status, current, next);
      current = next;
    }
  }

  /**
   * Submits a form found in `html` (a page fetched from `pageUrl`): its hidden inputs, then
   * `fields` (which override hidden inputs of the same name). POST forms are sent
   * `application/x-www-form-urlencoded`; GET forms put the fields in the query. The answer
   * is returned as is (redirects not followed).
   */
  async submitForm(
    pageUrl: string | URL,
    html: string,
    selector: FormSelector,
    fields: Record<string, string>,
  ): Promise<Response> {
    const form = findForm(parseForms(html, pageUrl), selector);
    const body = new URLSearchParams(form.hidden.filter(([name]) => !(name in fields)));
    for (const [name, value] of Object.entries(fields)) body.append(name, value);
    if (form.method === 'GET') {
      const target = new URL(form.action);
      target.search = body.toString();
      return this.fetch(target);
    }
    return this.fetch(form.action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    });
  }

  /** The value of a cookie that would be sent to `url`, if any. */
  cookie(url: string | URL, name: string): string | undefined {
    return this.cookiesFor(new URL(url)).find((c) => c.name === name)?.value;
  }

  /** Forgets every cookie (a fresh browser profile). */
  clearCookies(): void {
    this.#jar.clear();
  }

  private cookieHeader(url: URL): string {
    return this.cookiesFor(url)
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  private cookiesFor(url: URL): StoredCookie[] {
    const now = Date.now();
    const stored = this.#jar.get(url.origin) ?? [];
    const live = stored.filter((c) => c.expiresAt === undefined || c.expiresAt > now);
    if (live.length !== stored.length) this.#jar.set(url.origin, live);
    // RFC 6265 §5.4: longer paths first.
    return live.filter((c) => pathMatches(url.pathname, c.path)).sort((a, b) => b.path.length - a.path.length);
  }

  private storeCookies(url: URL, setCookies: string[]): void {
    if (setCookies.length === 0) return;
    const cookies = this.#jar.get(url.origin) ?? [];
    for (const header of setCookies) {
      const cookie = parseSetCookie(header, url);
      if (!cookie) continue;
      const at = cookies.findIndex((c) => c.name === cookie.name && c.path === cookie.path);
      if (at !== -1) cookies.splice(at, 1);
      if (cookie.expiresAt === undefined || cookie.expiresAt > Date.now()) cookies.push(cookie);
    }
    this.#jar.set(url.origin, cookies);
  }
}

function redirectInit(init: RequestInit, status: number, from: URL, to: URL): RequestInit {
  const method = (init.method ?? 'GET').toUpperCase();
  const becomesGet = status === 303 ? method !== 'HEAD' : (status === 301 || status === 302) && method === 'POST';
  if (becomesGet) return {};
  if (from.origin !== to.origin) return { method, body: init.body ?? null };
  return init;
}

/** RFC 6265 §5.1.4. */
function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

/** RFC 6265 §5.1.4 default-path. */
function defaultPath(url: URL): string {
  const path = url.pathname;
  if (!path.startsWith('/')) return '/';
  const lastSlash = path.lastIndexOf('/');
  return lastSlash <= 0 ? '/' : path.slice(0, lastSlash);
}

function parseSetCookie(header: string, url: URL): StoredCookie | undefined {
  const [pair = '', ...attributes] = header.split(';');
  const eq = pair.indexOf('=');
  if (eq <= 0) return undefined;
  const cookie: StoredCookie = {
    name: pair.slice(0, eq).trim(),
    value: pair.slice(eq + 1).trim(),
    path: defaultPath(url),
    expiresAt: undefined,
  };
  let maxAgeSeen = false;
  for (const attribute of attributes) {
    const at = attribute.indexOf('=');
    const key = (at === -1 ? attribute : attribute.slice(0, at)).trim().toLowerCase();
    const value = at === -1 ? '' : attribute.slice(at + 1).trim();
    if (key === 'path' && value.startsWith('/')) {
      cookie.path = value;
    } else if (key === 'max-age' && /^-?\d+$/.test(value)) {
      // Max-Age wins over Expires (RFC 6265 §5.3 step 3).
      maxAgeSeen = true;
      cookie.expiresAt = Date.now() + Number(value) * 1000;
    } else if (key === 'expires' && !maxAgeSeen) {
      const when = Date.parse(value);
      if (!Number.isNaN(when)) cookie.expiresAt = when;
    }
  }
  return cookie;
}

/** Every `<form>` in `html`, parsed with regular expressions (good enough for pages we render). */
export function parseForms(html: string, pageUrl: string | URL): HtmlForm[] {
  const forms: HtmlForm[] = [];
  for (const match of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form\s*>/gi)) {
    const attributes = parseAttributes(match[1] ?? '');
    const body = match[2] ?? '';
    const rawAction = attributes.get('action');
    const hidden: Array<[string, string]> = [];
    const fieldNames: string[] = [];
    for (const control of body.matchAll(/<(input|button|select|textarea)\b([^>]*)>/gi)) {
      const controlAttributes = parseAttributes(control[2] ?? '');
      const name = controlAttributes.get('name');
      if (name === undefined) continue;
      fieldNames.push(name);
      const isHidden =
        control[1]?.toLowerCase() === 'input' && controlAttributes.get('type')?.toLowerCase() === 'hidden';
      if (isHidden) hidden.push([name, controlAttributes.get('value') ?? '']);
    }
    forms.push({
      method: attributes.get('method')?.toUpperCase() === 'POST' ? 'POST' : 'GET',
      action: new URL(rawAction || String(pageUrl), pageUrl),
      rawAction,
      hidden,
      fieldNames,
    });
  }
  return forms;
}

function findForm(forms: HtmlForm[], selector: FormSelector): HtmlForm {
  const { action, index = 0 } = selector;
  const candidates =
    action === undefined
      ? forms
      : forms.filter((f) => f.rawAction === action || f.action.href === action || f.action.pathname === action);
  const form = candidates[index];
  if (!form) {
    const found = forms.map((f) => `${f.method} ${f.rawAction ?? '(no action)'}`).join(', ') || 'none';
    throw new Error(`no form matching ${JSON.stringify(selector)} (forms on the page: ${found})`);
  }
  return form;
}

function parseAttributes(source: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const match of source.matchAll(/([^\s"'<>\/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g)) {
    const name = match[1]?.toLowerCase();
    if (name === undefined || attributes.has(name)) continue;
    attributes.set(name, decodeEntities(match[2] ?? match[3] ?? match[4] ?? ''));
  }
  return attributes;
}

const NAMED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

function decodeEntities(value: string): string {
  return value.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, entity: string) => {
    if (entity[0] === '#') {
      const code = entity[1] === 'x' || entity[1] === 'X' ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10);
      return Number.isFinite(code) && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return NAMED_ENTITIES[entity.toLowerCase()] ?? whole;
  });
}
