/**
 * An OAuth authorization code flow against a test gateway whose identity provider is the
 * embedded dev provider (`{ id: 'dev', type: 'dev' }`), driven like a browser: /authorize, the
 * dev sign-in form, the consent page, the redirect back; then /token with any of the client
 * authentication methods MCP clients use.
 */
import { createHash, randomBytes } from 'node:crypto';
import { SignJWT, type CryptoKey, type KeyObject } from 'jose';
import { HttpSession } from './http-session.ts';

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export interface AuthorizationParams {
  origin: string;
  clientId: string;
  redirectUri: string;
  /** The MCP service URL (RFC 8707 `resource`). */
  resource: string;
  scope?: string;
  challenge?: string;
}

export function authorizationUrl(params: AuthorizationParams): URL {
  const url = new URL('/authorize', params.origin);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: params.clientId,
    redirect_uri: params.redirectUri,
    code_challenge: params.challenge ?? pkce().challenge,
    code_challenge_method: 'S256',
    state: randomBytes(8).toString('hex'),
    scope: params.scope ?? 'tools.read',
    resource: params.resource,
  }).toString();
  return url;
}

export interface CodeFlowResult {
  code: string;
  verifier: string;
  /** The redirect back to the client (not requested). */
  redirect: URL;
  /** The consent page as shown; empty when consent was already given (same user and client). */
  consentHtml: string;
}

function isRedirectTo(redirectUri: string) {
  const target = redirectUri.split('?')[0];
  return (url: URL) => url.href.split('?')[0] === target;
}

/**
 * Signs `email` in through the dev provider and approves consent; returns the code. Throws with
 * what was shown instead when the flow does not reach each step.
 */
export async function authorizeWithDevSignIn(params: AuthorizationParams & { email?: string; session?: HttpSession }): Promise<CodeFlowResult> {
  const session = params.session ?? new HttpSession();
  const { verifier, challenge } = pkce();
  const isRedirect = isRedirectTo(params.redirectUri);

  const toSignIn = await session.follow(authorizationUrl({ ...params, challenge }), {}, { stopWhen: isRedirect });
  const signInHtml = await toSignIn.response.text();
  if (toSignIn.response.status !== 200 || !toSignIn.url.pathname.startsWith('/signin/dev/')) {
    throw new Error(`expected the dev sign-in page, got ${toSignIn.response.status} at ${toSignIn.url.href}: ${signInHtml.slice(0, 600)}`);
  }
  const signedIn = await session.submitForm(toSignIn.url, signInHtml, { index: 0 }, { email: params.email ?? 'alice@example.com', name: 'Alice', groups: '' });
  const afterSignIn = signedIn.headers.get('location');
  if (signedIn.status !== 303 || !afterSignIn) throw new Error(`dev sign-in answered ${signedIn.status}: ${(await signedIn.text()).slice(0, 600)}`);

  const toConsent = await session.follow(new URL(afterSignIn, toSignIn.url), {}, { stopWhen: isRedirect });
  if (isRedirect(toConsent.url)) return withCode(toConsent.url, verifier, ''); // consent remembered
  const consentHtml = await toConsent.response.text();
  if (!consentHtml.includes('name="decision"')) {
    throw new Error(`expected the consent page, got ${toConsent.response.status} at ${toConsent.url.href}: ${consentHtml.slice(0, 600)}`);
  }
  const approved = await session.submitForm(toConsent.url, consentHtml, {}, { decision: 'approve' });
  const afterConsent = approved.headers.get('location');
  if (approved.status !== 303 || !afterConsent) throw new Error(`consent answered ${approved.status}`);
  const back = await session.follow(new URL(afterConsent, toConsent.url), {}, { stopWhen: isRedirect });
  if (!isRedirect(back.url)) throw new Error(`expected a redirect to ${params.redirectUri}, got ${back.response.status} at ${back.url.href}: ${(await back.response.text()).slice(0, 600)}`);
  return withCode(back.url, verifier, consentHtml);
}

function withCode(redirect: URL, verifier: string, consentHtml: string): CodeFlowResult {
  const code = redirect.searchParams.get('code');
  if (!code) throw new Error(`no code in ${redirect.href}`);
  return { code, verifier, redirect, consentHtml };
}

export type ClientAuthentication =
  | { method: 'none'; clientId: string }
  | { method: 'client_secret_basic' | 'client_secret_post'; clientId: string; secret: string }
  | { method: 'private_key_jwt'; clientId: string; key: CryptoKey | KeyObject; alg: string; kid?: string };

/** A client assertion as RFC 7523 §3 describes it, for the gateway's token endpoint. */
export async function clientAssertion(origin: string, auth: Extract<ClientAuthentication, { method: 'private_key_jwt' }>): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: auth.alg, ...(auth.kid ? { kid: auth.kid } : {}) })
    .setIssuer(auth.clientId)
    .setSubject(auth.clientId)
    .setAudience(new URL('/token', origin).href)
    .setJti(randomBytes(16).toString('hex'))
    .setIssuedAt()
    .setExpirationTime('2m')
    .sign(auth.key);
}

/** POSTs to /token with `params` and the client authentication; returns status and JSON. */
export async function tokenRequest(origin: string, params: Record<string, string>, auth: ClientAuthentication): Promise<{ status: number; body: Record<string, unknown> }> {
  const form = new URLSearchParams(params);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  switch (auth.method) {
    case 'none':
      form.set('client_id', auth.clientId);
      break;
    case 'client_secret_post':
      form.set('client_id', auth.clientId);
      form.set('client_secret', auth.secret);
      break;
    case 'client_secret_basic':
      // RFC 6749 §2.3.1: each part form-urlencoded, then Basic.
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(auth.clientId)}:${encodeURIComponent(auth.secret)}`).toString('base64')}`;
      break;
    case 'private_key_jwt':
      form.set('client_id', auth.clientId);
      form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      form.set('client_assertion', await clientAssertion(origin, auth));
      break;
  }
  const response = await fetch(new URL('/token', origin), { method: 'POST', headers, body: form.toString() });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export function exchangeCode(origin: string, flow: Pick<CodeFlowResult, 'code' | 'verifier'>, redirectUri: string, auth: ClientAuthentication) {
  return tokenRequest(origin, { grant_type: 'authorization_code', code: flow.code, code_verifier: flow.verifier, redirect_uri: redirectUri }, auth);
}
