/**
 * End to end: the real MCP TypeScript SDK client (its own discovery, registration, PKCE,
 * token and refresh code) against a running gateway whose identity provider is a real local
 * oidc-provider, with the sign-in and consent pages submitted as a browser would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer } from '../../src/demo/index.ts';
import { HttpSession } from '../support/http-session.ts';
import { startUpstreamIdp, type UpstreamIdp } from '../support/upstream-idp.ts';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { authorizeAsBrowser, connectWithOAuth, MemoryOAuthProvider } from '../support/mcp-oauth-client.ts';

let idp: UpstreamIdp;
let gateway: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;
let mcpUrl: string;

beforeAll(async () => {
  const port = await freePort();
  idp = await startUpstreamIdp({
    users: {
      alice: { sub: 'alice-1', email: 'alice@example.com', email_verified: true, name: 'Alice Liddell', groups: ['eng'] },
      mallory: { sub: 'mallory-1', email: 'mallory@evil.test', email_verified: true, name: 'Mallory' },
    },
    clients: [{ client_id: 'gatehouse', client_secret: 'upstream-secret', redirect_uris: [`http://127.0.0.1:${port}/callback/corp`] }],
  });
  demo = await startDemoServer({ port: 0 });
  gateway = await startTestGateway({
    identity_providers: [{ id: 'corp', type: 'oidc', issuer: idp.issuer, client_id: 'gatehouse', client_secret: 'upstream-secret', scopes: ['openid', 'email', 'profile', 'groups'] }],
    access: { allow: { domains: ['example.com'] } },
    services: { demo: { upstream: demo.url, scopes: ['tools.read', 'tools.call'] } },
  }, { port });
  mcpUrl = `${gateway.origin}/demo/mcp`;
  // Discovery of the upstream provider runs in the background at start.
  for (let i = 0; i < 50 && (await fetch(`${gateway.origin}/ready`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
});

afterAll(async () => {
  await gateway?.close();
  await demo?.close();
  await idp?.close();
});

function signInAs(login: string, redirect: string, decision: 'approve' | 'deny' = 'approve') {
  const session = new HttpSession();
  return (url: URL) => authorizeAsBrowser(url, redirect, { session, upstreamOrigin: idp.url, login, decision });
}

describe('MCP SDK client through the gateway', () => {
  it('discovers, registers, signs in, consents, gets tokens and calls tools as the signed-in user', async () => {
    const redirect = 'http://127.0.0.1:53682/callback';
    const oauth = new MemoryOAuthProvider(redirect);
    const client = await connectWithOAuth(mcpUrl, oauth, signInAs('alice', redirect), {
      headers: { 'X-User-Email': 'spoofed@evil.test', 'X-User-Id': 'spoofed' },
    });

    expect(oauth.clientInfo?.client_id).toMatch(/^gh_/);
    expect(oauth.savedTokens?.refresh_token).toBeTruthy();
    expect(oauth.savedTokens?.scope?.split(' ').sort()).toEqual(['tools.call', 'tools.read']);

    const tools = await client.listTools();
    expect(tools.tools.map((tool) => tool.name)).toContain('whoami');
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    const who = JSON.parse((result.content as Array<{ text: string }>)[0]!.text);
    expect(who).toMatchObject({
      user_id: 'corp:alice-1',
      email: 'alice@example.com',
      name: 'Alice Liddell',
      groups: ['eng'],
      provider: 'corp',
      client_id: oauth.clientInfo?.client_id,
      authorization_header_present: false,
    });
    await client.close();
  });

  it('refreshes with the SDK when the access token stops working, and keeps working', async () => {
    const redirect = 'http://127.0.0.1:53683/callback';
    const oauth = new MemoryOAuthProvider(redirect);
    const first = await connectWithOAuth(mcpUrl, oauth, signInAs('alice', redirect));
    await first.close();
    const before = oauth.savedTokens!;
    oauth.savedTokens = { ...before, access_token: `${before.access_token.slice(0, -4)}AAAA` };
    const again = await connectWithOAuth(mcpUrl, oauth, async () => { throw new Error('should refresh, not sign in again'); });
    expect(oauth.savedTokens!.refresh_token).not.toBe(before.refresh_token);
    expect(oauth.savedTokens!.access_token).not.toBe(before.access_token);
    await again.listTools();
    await again.close();
  });

  it('remembers consent per user and client: the second authorization skips the consent page', async () => {
    const redirect = 'http://127.0.0.1:53684/callback';
    const oauth = new MemoryOAuthProvider(redirect);
    const session = new HttpSession();
    const signIn = (url: URL) => authorizeAsBrowser(url, redirect, { session, upstreamOrigin: idp.url, login: 'alice' });
    (await connectWithOAuth(mcpUrl, oauth, signIn)).close();
    oauth.savedTokens = undefined;
    oauth.authorizationUrl = undefined;
    // Same browser session, same client: no upstream sign-in, no consent page, straight back.
    const client = await connectWithOAuth(mcpUrl, oauth, async (url) => {
      const result = await session.follow(url, {}, { stopWhen: (next) => next.href.startsWith(redirect) });
      expect(result.url.href.startsWith(redirect)).toBe(true);
      return result.url;
    });
    await client.listTools();
    await client.close();
  });

  it('denies a user outside the access policy: a page for the person, access_denied for the client', async () => {
    const redirect = 'http://127.0.0.1:53685/callback';
    const oauth = new MemoryOAuthProvider(redirect);
    const session = new HttpSession();
    await expect(connectWithOAuth(mcpUrl, oauth, async (url) => {
      const toUpstream = await session.follow(url, {}, { stopWhen: (next) => next.origin === idp.url });
      const { signInAtUpstream } = await import('../support/upstream-idp.ts');
      const callback = await signInAtUpstream(session, toUpstream.url, 'mallory');
      const denied = await session.follow(callback);
      expect(denied.response.status).toBe(403);
      const page = await denied.response.text();
      expect(page).toContain('not on the list');
      const back = page.match(/href="([^"]+)">Return to the application/)?.[1];
      expect(back).toBeTruthy();
      const final = await session.follow(new URL(back!.replace(/&amp;/g, '&'), gateway.origin), {}, { stopWhen: (next) => next.href.startsWith(redirect) });
      expect(final.url.searchParams.get('error')).toBe('access_denied');
      expect(final.url.searchParams.get('iss')).toBe(gateway.issuer);
      return final.url;
    })).rejects.toThrow(/no code/);
    expect(gateway.logs.some((line) => line.event === 'access.denied' && line.account === 'corp:mallory-1')).toBe(true);
  });

  it('never logs tokens, codes or secrets', () => {
    const text = gateway.logText();
    expect(text).not.toContain('upstream-secret');
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}/);
  });
});
