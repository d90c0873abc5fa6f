import { createHash, randomBytes } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpSession } from './http-session.ts';
import { signInAtUpstream, startUpstreamIdp, type UpstreamIdp } from './upstream-idp.ts';

const REDIRECT_URI = 'http://127.0.0.1:9/callback';

interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  userinfo_endpoint: string;
  jwks_uri: string;
  code_challenge_methods_supported: string[];
  scopes_supported: string[];
  claims_supported: string[];
}

async function discover(idp: UpstreamIdp): Promise<Discovery> {
  const response = await fetch(`${idp.issuer}/.well-known/openid-configuration`);
  expect(response.status).toBe(200);
  return (await response.json()) as Discovery;
}

function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorizeUrl(discovery: Discovery, clientId: string, challenge: string, state: string, nonce: string): URL {
  const url = new URL(discovery.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    scope: 'openid email profile groups',
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  return url;
}

describe('upstream IdP (oidc-provider)', () => {
  let idp: UpstreamIdp;

  beforeAll(async () => {
    idp = await startUpstreamIdp({
      issuerPath: '/realms/test',
      users: {
        alice: { sub: 'u-alice', email: 'alice@example.com', email_verified: true, name: 'Alice', groups: ['eng', 'ops'] },
        bob: { sub: 'u-bob', email: 'bob@example.org', email_verified: false, name: 'Bob' },
      },
      clients: [
        { client_id: 'gateway', client_secret: 'gateway-secret', redirect_uris: [REDIRECT_URI] },
        { client_id: 'public-app', redirect_uris: [REDIRECT_URI] },
      ],
    });
  });

  afterAll(async () => {
    await idp?.close();
  });

  it('serves discovery at the path-suffixed issuer', async () => {
    const discovery = await discover(idp);
    expect(idp.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/realms\/test$/);
    expect(discovery.issuer).toBe(idp.issuer);
    expect(discovery.authorization_endpoint.startsWith(`${idp.issuer}/`)).toBe(true);
    expect(discovery.token_endpoint.startsWith(`${idp.issuer}/`)).toBe(true);
    expect(discovery.code_challenge_methods_supported).toEqual(['S256']);
    expect(discovery.scopes_supported).toEqual(expect.arrayContaining(['openid', 'email', 'profile', 'groups']));
    expect(discovery.claims_supported).toEqual(expect.arrayContaining(['email', 'email_verified', 'name', 'groups']));
    const jwks = await fetch(discovery.jwks_uri);
    expect(jwks.status).toBe(200);
  });

  it('runs code + PKCE by hand and issues an ID token with email, email_verified and groups', async () => {
    const discovery = await discover(idp);
    const session = new HttpSession();
    const { verifier, challenge } = pkcePair();
    const state = randomBytes(8).toString('hex');
    const nonce = randomBytes(8).toString('hex');

    // Authorize → login form.
    const leavesIdp = (url: URL) => url.origin !== idp.url;
    const login = await session.follow(authorizeUrl(discovery, 'gateway', challenge, state, nonce), {}, { stopWhen: leavesIdp });
    expect(login.response.status).toBe(200);
    expect(login.url.pathname).toMatch(/^\/interaction\//);
    const html = await login.response.text();
    expect(html).toContain('id="login"');
    expect(html).toContain('id="submit"');

    // Submit the form → back into the authorization flow → redirect to the RP.
    const submitted = await session.submitForm(login.url, html, {}, { login: 'alice' });
    expect([302, 303]).toContain(submitted.status);
    const back = await session.follow(new URL(submitted.headers.get('location')!, login.url), {}, { stopWhen: leavesIdp });
    const callback = back.url;
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('state')).toBe(state);
    expect(callback.searchParams.get('iss')).toBe(idp.issuer);
    const code = callback.searchParams.get('code');
    expect(code).toBeTruthy();

    // Token request with client_secret_basic and the PKCE verifier.
    const tokenResponse = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from('gateway:gateway-secret').toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: code!, redirect_uri: REDIRECT_URI, code_verifier: verifier }),
    });
    const tokens = (await tokenResponse.json()) as { id_token: string; access_token: string; refresh_token?: string };
    expect(tokenResponse.status).toBe(200);
    expect(tokens.refresh_token).toBeTruthy();

    const { payload } = await jwtVerify(tokens.id_token, createRemoteJWKSet(new URL(discovery.jwks_uri)), {
      issuer: idp.issuer,
      audience: 'gateway',
    });
    expect(payload).toMatchObject({
      sub: 'u-alice',
      nonce,
      email: 'alice@example.com',
      email_verified: true,
      name: 'Alice',
      groups: ['eng', 'ops'],
    });

    const userinfo = await fetch(discovery.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(userinfo.status).toBe(200);
    expect(await userinfo.json()).toMatchObject({ sub: 'u-alice', email: 'alice@example.com', groups: ['eng', 'ops'] });
  });

  it('refuses a token request without the right PKCE verifier', async () => {
    const discovery = await discover(idp);
    const { challenge } = pkcePair();
    const redirect = new URL(
      await signInAtUpstream(new HttpSession(), authorizeUrl(discovery, 'public-app', challenge, 's', 'n'), 'bob'),
    );
    const response = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        client_id: 'public-app',
        code: redirect.searchParams.get('code')!,
        redirect_uri: REDIRECT_URI,
        code_verifier: pkcePair().verifier,
      }),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: 'invalid_grant' });
  });

  it('refuses an authorization request without PKCE', async () => {
    const discovery = await discover(idp);
    const url = authorizeUrl(discovery, 'gateway', 'x', 's', 'n');
    url.searchParams.delete('code_challenge');
    url.searchParams.delete('code_challenge_method');
    const { url: redirect } = await new HttpSession().follow(url, {}, { stopWhen: (u) => u.origin !== idp.url });
    expect(redirect.searchParams.get('error')).toBe('invalid_request');
  });

  it('refuses an unknown login and re-renders the form', async () => {
    const discovery = await discover(idp);
    const session = new HttpSession();
    const login = await session.follow(authorizeUrl(discovery, 'gateway', pkcePair().challenge, 's', 'n'));
    const html = await login.response.text();
    const refused = await session.submitForm(login.url, html, {}, { login: 'mallory' });
    expect(refused.status).toBe(400);
    const again = await refused.text();
    expect(again).toContain('id="login"');
    expect(again).toContain('Unknown user');

    // The same interaction still accepts a known login afterwards.
    const accepted = await session.submitForm(login.url, again, { action: login.url.pathname }, { login: 'alice' });
    expect(accepted.status).toBe(303);

    await expect(
      signInAtUpstream(new HttpSession(), authorizeUrl(discovery, 'gateway', pkcePair().challenge, 's', 'n'), 'mallory'),
    ).rejects.toThrow(/refused \(400\)/);
  });

  it('signInAtUpstream returns the callback URL; setUser changes what is released', async () => {
    const discovery = await discover(idp);
    idp.setUser('carol', { sub: 'u-carol', email: 'carol@example.com', email_verified: true, groups: ['admins'] });
    const redirect = new URL(
      await signInAtUpstream(new HttpSession(), authorizeUrl(discovery, 'gateway', pkcePair().challenge, 'st', 'n'), 'carol'),
    );
    expect(`${redirect.origin}${redirect.pathname}`).toBe(REDIRECT_URI);
    expect(redirect.searchParams.get('code')).toBeTruthy();
    expect(redirect.searchParams.get('state')).toBe('st');
  });
});

describe('upstream IdP at an origin-root issuer with a custom groups claim', () => {
  let idp: UpstreamIdp;

  beforeAll(async () => {
    idp = await startUpstreamIdp({
      groupsClaim: 'roles',
      users: { dana: { sub: 'u-dana', email: 'dana@example.com', email_verified: true, groups: ['eng'], department: 'R&D' } },
      clients: [{ client_id: 'gw', client_secret: 'gw-secret', redirect_uris: [REDIRECT_URI] }],
    });
  });

  afterAll(async () => {
    await idp?.close();
  });

  it('releases groups under the configured claim name and accepts client_secret_post', async () => {
    expect(idp.issuer).toBe(idp.url);
    const discovery = await discover(idp);
    expect(discovery.issuer).toBe(idp.issuer);
    const { verifier, challenge } = pkcePair();
    const redirect = new URL(await signInAtUpstream(new HttpSession(), authorizeUrl(discovery, 'gw', challenge, 's', 'n'), 'dana'));
    const response = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        client_id: 'gw',
        client_secret: 'gw-secret',
        code: redirect.searchParams.get('code')!,
        redirect_uri: REDIRECT_URI,
        code_verifier: verifier,
      }),
    });
    expect(response.status).toBe(200);
    const { id_token } = (await response.json()) as { id_token: string };
    const { payload } = await jwtVerify(id_token, createRemoteJWKSet(new URL(discovery.jwks_uri)), { issuer: idp.issuer });
    expect(payload).toMatchObject({ sub: 'u-dana', roles: ['eng'], department: 'R&D' });
    expect(payload).not.toHaveProperty('groups');
  });
});
