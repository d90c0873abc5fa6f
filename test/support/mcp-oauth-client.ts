/**
 * An MCP SDK client with its own OAuth client code (discovery, registration, PKCE, token,
 * refresh), and a browserless driver for the gateway's sign-in and consent pages.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { HttpSession } from './http-session.ts';
import { signInAtUpstream } from './upstream-idp.ts';

/** The in-memory credential store an MCP client keeps: registration, tokens, PKCE verifier. */
export class MemoryOAuthProvider implements OAuthClientProvider {
  clientInfo: OAuthClientInformationMixed | undefined;
  savedTokens: OAuthTokens | undefined;
  verifier = '';
  authorizationUrl: URL | undefined;
  readonly metadata: OAuthClientMetadata;
  readonly redirect: string;

  constructor(redirect: string, metadata: Partial<OAuthClientMetadata> = {}) {
    this.redirect = redirect;
    this.metadata = {
      client_name: 'Gatehouse test client',
      redirect_uris: [redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...metadata,
    };
  }

  get redirectUrl() { return this.redirect; }
  get clientMetadata() { return this.metadata; }
  clientInformation() { return this.clientInfo; }
  saveClientInformation(info: OAuthClientInformationMixed) { this.clientInfo = info; }
  tokens() { return this.savedTokens; }
  saveTokens(tokens: OAuthTokens) { this.savedTokens = tokens; }
  redirectToAuthorization(url: URL) { this.authorizationUrl = url; }
  saveCodeVerifier(verifier: string) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
}

export interface BrowserlessSignIn {
  session: HttpSession;
  /** Where the upstream identity provider lives (its origin). */
  upstreamOrigin: string;
  login: string;
  decision?: 'approve' | 'deny';
}

/**
 * Walks an authorization URL through the gateway like a browser: upstream sign-in, then the
 * consent page (when shown). Returns the final redirect to the client's redirect URI.
 */
export async function authorizeAsBrowser(authorizationUrl: URL | string, redirectUri: string, options: BrowserlessSignIn): Promise<URL> {
  const { session } = options;
  const isClientRedirect = (url: URL) => url.href.startsWith(redirectUri.replace(/\/$/, '').replace(/:\d+\//, '/'))
    || sameLoopbackTarget(url, redirectUri);
  const toUpstream = await session.follow(authorizationUrl, {}, {
    stopWhen: (url) => url.origin === options.upstreamOrigin || isClientRedirect(url),
  });
  if (isClientRedirect(toUpstream.url)) return toUpstream.url;
  if (toUpstream.url.origin !== options.upstreamOrigin) {
    throw new Error(`expected a redirect to the identity provider, got ${toUpstream.response.status} at ${toUpstream.url.href}: ${await toUpstream.response.text()}`);
  }
  const callback = await signInAtUpstream(session, toUpstream.url, options.login);
  const afterSignIn = await session.follow(callback, {}, { stopWhen: isClientRedirect });
  if (isClientRedirect(afterSignIn.url)) return afterSignIn.url;
  return submitConsent(session, afterSignIn.url, await afterSignIn.response.text(), isClientRedirect, options.decision ?? 'approve');
}

export async function submitConsent(session: HttpSession, pageUrl: URL, html: string, isClientRedirect: (url: URL) => boolean, decision: 'approve' | 'deny'): Promise<URL> {
  if (!html.includes('name="decision"')) throw new Error(`expected the consent page at ${pageUrl.href}, got: ${html.slice(0, 500)}`);
  const posted = await session.submitForm(pageUrl, html, {}, { decision });
  const location = posted.headers.get('location');
  if (posted.status !== 303 || !location) throw new Error(`consent post answered ${posted.status}`);
  const done = await session.follow(new URL(location, pageUrl), {}, { stopWhen: isClientRedirect });
  if (!isClientRedirect(done.url)) throw new Error(`expected a redirect to the client, got ${done.response.status} at ${done.url.href}`);
  return done.url;
}

function sameLoopbackTarget(url: URL, redirectUri: string): boolean {
  const expected = new URL(redirectUri);
  return url.protocol === expected.protocol && url.hostname === expected.hostname && url.pathname === expected.pathname;
}

/** Connects the SDK client, completing the OAuth flow through `signIn` when asked to. */
export async function connectWithOAuth(mcpUrl: string, provider: MemoryOAuthProvider, signIn: (authorizationUrl: URL) => Promise<URL>, requestInit?: RequestInit): Promise<Client> {
  const makeTransport = () => new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, ...(requestInit ? { requestInit } : {}) });
  const client = new Client({ name: 'gatehouse-e2e', version: '1.0.0' }, { capabilities: {} });
  let transport = makeTransport();
  try {
    await client.connect(transport);
    return client;
  } catch (error) {
    if (!provider.authorizationUrl) throw error;
  }
  const redirected = await signIn(provider.authorizationUrl);
  const code = redirected.searchParams.get('code');
  if (!code) throw new Error(`no code in ${redirected.href}`);
  await transport.finishAuth(code);
  await transport.close().catch(() => undefined);
  transport = makeTransport();
  const connected = new Client({ name: 'gatehouse-e2e', version: '1.0.0' }, { capabilities: {} });
  await connected.connect(transport);
  return connected;
}
