/**
 * The OpenID Connect presets end to end: one gateway with a google, microsoft, okta, auth0 and
 * keycloak provider, each pointed (through its override keys) at a local stand-in shaped like
 * that provider (test/support/provider-standins.ts). For each: the real MCP SDK client starts
 * the authorization, the person picks the provider on the chooser page and signs in there,
 * the gateway normalises who they are (read back through the demo server's whoami tool and
 * the stored account), and the access policy lets one person in and keeps another out.
 *
 * Policy: allow verified addresses at example.com, and the group mcp-users.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer } from '../../src/demo/index.ts';
import { createOidcProvider, presetOidcOptions } from '../../src/identity/index.ts';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { HttpSession } from '../support/http-session.ts';
import { MemoryOAuthProvider, submitConsent } from '../support/mcp-oauth-client.ts';
import {
  AUTH0_GROUPS_CLAIM, ENTRA_OTHER_TENANT, ENTRA_TENANT,
  startAuth0Standin, startEntraStandin, startGoogleStandin, startKeycloakStandin, startOktaStandin, type Standin,
} from '../support/provider-standins.ts';
import { signInAtUpstream } from '../support/upstream-idp.ts';

const BOB_OID = '5d0c8a1e-2b3f-4e6a-9c7d-0e1f2a3b4c5d';
const CAROL_OID = '6e1d9b2f-3c4a-4f7b-8d8e-1f2a3b4c5d6e';
const EVE_OID = '7f2eac30-4d5b-4a8c-9e9f-2a3b4c5d6e7f';
const ENG_GROUP_OID = 'c0ffee00-1111-4222-8333-444455556666';
const DRIVE_SCOPE = 'drive.readonly';

let gateway: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;
const standins: Record<string, Standin> = {};
let nextClientPort = 54100;

beforeAll(async () => {
  const port = await freePort();
  const callback = (id: string) => `http://127.0.0.1:${port}/callback/${id}`;
  const [google, entra, okta, auth0, keycloak] = await Promise.all([
    startGoogleStandin({
      id: 'google', redirectUri: callback('google'), scopes: [DRIVE_SCOPE], users: {
        alice: { sub: '110169484474386276334', email: 'Alice@Example.com', email_verified: true, hd: 'example.com', name: 'Alice Liddell', picture: 'https://example.com/alice.png' },
        // A Google account opened with an existing address: verified once, but Google is not authoritative for it.
        mallory: { sub: '110169484474386276999', email: 'mallory@example.com', email_verified: true, name: 'Mallory' },
      },
    }),
    startEntraStandin({
      id: 'entra', redirectUri: callback('entra'), users: {
        bob: { sub: 'AAAAAAAAAAAAAAAAAAAAAbob', tid: ENTRA_TENANT, oid: BOB_OID, email: 'bob@example.com', xms_edov: true, name: 'Bob Builder', groups: [ENG_GROUP_OID], roles: ['MCP.User'] },
        carol: { sub: 'AAAAAAAAAAAAAAAAAAAAcarol', tid: ENTRA_TENANT, oid: CAROL_OID, email: 'carol@example.com', name: 'Carol' },
        // Signed by the stand-in with its own tenant's issuer, but claiming another tenant.
        eve: { sub: 'AAAAAAAAAAAAAAAAAAAAAAeve', tid: ENTRA_OTHER_TENANT, oid: EVE_OID, email: 'eve@example.com', xms_edov: true, name: 'Eve' },
      },
    }),
    startOktaStandin({
      id: 'okta', redirectUri: callback('okta'), users: {
        dave: { sub: '00u1dave', email: 'dave@partner.test', email_verified: true, name: 'Dave', groups: ['Everyone', 'mcp-users'] },
        frank: { sub: '00u1frank', email: 'frank@partner.test', email_verified: true, name: 'Frank', groups: ['Everyone'] },
      },
    }),
    startAuth0Standin({
      id: 'auth0', redirectUri: callback('auth0'), users: {
        erin: { sub: 'auth0|65f0erin', email: 'erin@partner.test', email_verified: true, name: 'Erin', [AUTH0_GROUPS_CLAIM]: ['mcp-users'] },
        oscar: { sub: 'auth0|65f0oscar', email: 'oscar@partner.test', email_verified: true, name: 'Oscar', [AUTH0_GROUPS_CLAIM]: [] },
      },
    }),
    startKeycloakStandin({
      id: 'keycloak', redirectUri: callback('keycloak'), users: {
        kim: { sub: 'kc-kim', email: 'kim@partner.test', email_verified: true, name: 'Kim', groups: ['/mcp-users', '/eng/backend'], realm_access: { roles: ['offline_access', 'mcp-admin'] } },
        // A subgroup named like an allowed group is not that group.
        ken: { sub: 'kc-ken', email: 'ken@partner.test', email_verified: true, name: 'Ken', groups: ['/eng/mcp-users'], realm_access: { roles: [] } },
      },
    }),
  ]);
  Object.assign(standins, { google, entra, okta, auth0, keycloak });
  demo = await startDemoServer({ port: 0 });
  gateway = await startTestGateway({
    identity_providers: [google.entry, entra.entry, okta.entry, auth0.entry, keycloak.entry],
    access: { allow: { domains: ['example.com'], groups: ['mcp-users'] } },
    services: {
      demo: { upstream: demo.url, scopes: ['tools.read', 'tools.call'], default: true },
      drive: { upstream: demo.url, forward: { upstream_token: 'X-Upstream-Token' }, upstream_scopes: [DRIVE_SCOPE] },
    },
  }, { port });
  // Discovery of every provider runs in the background at start.
  for (let i = 0; i < 50 && (await fetch(`${gateway.origin}/ready`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
});

afterAll(async () => {
  await gateway?.close();
  await demo?.close();
  await Promise.all(Object.values(standins).map((standin) => standin.idp.close()));
});

interface Attempt {
  /** The gateway's answer to the provider's redirect back (a redirect onward, or a page). */
  response: Response;
  url: URL;
  session: HttpSession;
  redirect: string;
  transport: StreamableHTTPClientTransport;
  oauth: MemoryOAuthProvider;
  mcpUrl: string;
}

/**
 * The MCP SDK client asks for authorization; the person picks `providerId` on the chooser and
 * signs in there as `login`. Stops at the gateway's answer to the provider's redirect back.
 */
async function attempt(providerId: string, login: string, service = 'demo'): Promise<Attempt> {
  const { idp } = standins[providerId]!;
  const mcpUrl = `${gateway.origin}/${service}/mcp`;
  const redirect = `http://127.0.0.1:${nextClientPort++}/callback`;
  const oauth = new MemoryOAuthProvider(redirect);
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: oauth });
  await expect(new Client({ name: 'providers-test', version: '1' }).connect(transport)).rejects.toThrow();
  const session = new HttpSession();

  const chooser = await session.follow(oauth.authorizationUrl!);
  const html = await chooser.response.text();
  expect(chooser.response.status).toBe(200);
  const href = new RegExp(`href="([^"]+)" data-provider="${providerId}"`).exec(html)?.[1];
  expect(href, `chooser lists ${providerId}`).toBeTruthy();
  const toProvider = await session.follow(new URL(href!.replace(/&amp;/g, '&'), chooser.url), {}, { stopWhen: (url) => url.origin === idp.url });
  expect(toProvider.url.origin).toBe(idp.url);

  const callback = await signInAtUpstream(session, toProvider.url, login);
  const back = await session.follow(callback, {}, { stopWhen: (url) => url.href.startsWith(redirect) });
  return { response: back.response, url: back.url, session, redirect, transport, oauth, mcpUrl };
}

/** Approves consent, finishes the SDK's token exchange and returns what the demo server's whoami saw. */
async function whoami(signIn: Attempt): Promise<Record<string, unknown>> {
  const isClientRedirect = (url: URL) => url.href.startsWith(signIn.redirect);
  const final = isClientRedirect(signIn.url)
    ? signIn.url
    : await submitConsent(signIn.session, signIn.url, await signIn.response.text(), isClientRedirect, 'approve');
  await signIn.transport.finishAuth(final.searchParams.get('code')!);
  const client = new Client({ name: 'providers-test', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(signIn.mcpUrl), { authProvider: signIn.oauth }));
  const result = await client.callTool({ name: 'whoami', arguments: {} });
  await client.close();
  return JSON.parse((result.content as Array<{ text: string }>)[0]!.text) as Record<string, unknown>;
}

async function account(id: string): Promise<Record<string, unknown> | undefined> {
  return (await gateway.store.get('account', id))?.value as Record<string, unknown> | undefined;
}

async function expectDenied(signIn: Attempt, accountId: string): Promise<void> {
  expect(signIn.response.status).toBe(403);
  expect(await signIn.response.text()).toContain('have access');
  expect(gateway.logs.some((line) => line.event === 'access.denied' && line.account === accountId)).toBe(true);
}

describe('google', () => {
  it('signs in a Workspace user: verified email, no groups; allowed by domain', async () => {
    const signIn = await attempt('google', 'alice');
    const who = await whoami(signIn);
    expect(who).toMatchObject({ user_id: 'google:110169484474386276334', provider: 'google', email: 'alice@example.com', name: 'Alice Liddell' });
    expect(await account('google:110169484474386276334')).toMatchObject({
      provider: 'google', subject: '110169484474386276334', email: 'alice@example.com', emailVerified: true, picture: 'https://example.com/alice.png', groups: [],
    });
    // A plain sign-in asks for no offline access: no consent screen at Google each time.
    const request = standins.google!.idp.authorizationRequests.at(-1)!;
    expect(request.get('scope')).toBe('openid email profile');
    expect(request.has('access_type')).toBe(false);
    expect(request.has('prompt')).toBe(false);
  });

  it('denies an address at the allowed domain that Google is not authoritative for (no hd)', async () => {
    const signIn = await attempt('google', 'mallory');
    await expectDenied(signIn, 'google:110169484474386276999');
    expect(await account('google:110169484474386276999')).toMatchObject({ email: 'mallory@example.com', emailVerified: false });
  });

  it('asks for offline access and consent when a service wants the user\'s Google token', async () => {
    const signIn = await attempt('google', 'alice', 'drive');
    const request = standins.google!.idp.authorizationRequests.at(-1)!;
    expect(request.get('scope')?.split(' ')).toEqual(expect.arrayContaining(['openid', 'email', 'profile', DRIVE_SCOPE]));
    expect(request.get('access_type')).toBe('offline');
    expect(request.get('prompt')).toBe('consent');
    expect(request.get('include_granted_scopes')).toBe('true');
    expect(await whoami(signIn)).toMatchObject({ user_id: 'google:110169484474386276334' });
  });
});

describe('microsoft (Entra, multi-tenant)', () => {
  it('signs in through the {tenantid} issuer: subject tid/oid, groups and app roles, xms_edov-verified email; allowed by domain', async () => {
    const signIn = await attempt('entra', 'bob');
    const who = await whoami(signIn);
    const id = `entra:${ENTRA_TENANT}/${BOB_OID}`;
    expect(who).toMatchObject({ user_id: id, provider: 'entra', email: 'bob@example.com', name: 'Bob Builder', groups: [ENG_GROUP_OID, 'MCP.User'] });
    expect(await account(id)).toMatchObject({ subject: `${ENTRA_TENANT}/${BOB_OID}`, emailVerified: true });
    // The RFC 8707 resource parameter never reaches Entra (the stand-in would refuse it).
    expect(standins.entra!.idp.authorizationRequests.every((request) => !request.has('resource'))).toBe(true);
  });

  it('denies an unverified email (no xms_edov) even at the allowed domain', async () => {
    const signIn = await attempt('entra', 'carol');
    const id = `entra:${ENTRA_TENANT}/${CAROL_OID}`;
    await expectDenied(signIn, id);
    expect(await account(id)).toMatchObject({ email: 'carol@example.com', emailVerified: false });
  });

  it('refuses a token whose issuer does not belong to its tid', async () => {
    const signIn = await attempt('entra', 'eve');
    expect(signIn.response.status).toBe(400);
    expect(await signIn.response.text()).toContain('Sign-in failed');
    const failure = gateway.logs.find((line) => line.provider === 'entra' && String(line.reason).includes('sign-in failed'));
    expect(String(failure?.reason)).toContain(`unexpected JWT "iss" (issuer) claim value: iss expected "${standins.entra!.idp.url}/${ENTRA_OTHER_TENANT}/v2.0", got "${standins.entra!.idp.issuer}"`);
    expect(await account(`entra:${ENTRA_OTHER_TENANT}/${EVE_OID}`)).toBeUndefined();
  });
});

describe('microsoft: the issuer rule on a refresh', () => {
  it('checks the ID token of a refresh response against the token\'s own tenant too', async () => {
    const entry = gateway.config.identity_providers.find((candidate) => candidate.id === 'entra')!;
    const provider = createOidcProvider(presetOidcOptions(entry)!);
    try {
      for (let i = 0; i < 50 && !provider.readiness().ready; i++) await new Promise((r) => setTimeout(r, 20));
      const start = await provider.begin({ state: 'state-1', callbackUrl: `${gateway.origin}/callback/entra` });
      const callback = await signInAtUpstream(new HttpSession(), start.url, 'bob');
      const { identity, tokens } = await provider.complete({ currentUrl: new URL(callback), state: 'state-1', secrets: start.secrets });
      expect(identity.subject).toBe(`${ENTRA_TENANT}/${BOB_OID}`);
      expect(tokens?.refreshToken).toBeTruthy();
      const refreshed = await provider.refresh!(tokens!.refreshToken!);
      expect(refreshed.accessToken).toBeTruthy();
      expect(refreshed.accessToken).not.toBe(tokens!.accessToken);
    } finally {
      provider.close();
    }
  });
});

describe('okta (custom authorization server)', () => {
  it('reads groups and email_verified from userinfo (thin ID token); allowed by group', async () => {
    const who = await whoami(await attempt('okta', 'dave'));
    expect(who).toMatchObject({ user_id: 'okta:00u1dave', email: 'dave@partner.test', name: 'Dave', groups: ['Everyone', 'mcp-users'] });
    expect(await account('okta:00u1dave')).toMatchObject({ emailVerified: true });
    expect(standins.okta!.idp.authorizationRequests.at(-1)!.get('scope')).toBe('openid email profile groups');
  });

  it('denies a user outside the group and the domain', async () => {
    await expectDenied(await attempt('okta', 'frank'), 'okta:00u1frank');
  });
});

describe('auth0', () => {
  it('accepts the trailing-slash issuer and reads the namespaced groups claim; allowed by group', async () => {
    expect(standins.auth0!.idp.issuer.endsWith('/')).toBe(true);
    const who = await whoami(await attempt('auth0', 'erin'));
    expect(who).toMatchObject({ user_id: 'auth0:auth0|65f0erin', email: 'erin@partner.test', groups: ['mcp-users'] });
  });

  it('denies a user without the group', async () => {
    await expectDenied(await attempt('auth0', 'oscar'), 'auth0:auth0|65f0oscar');
  });
});

describe('keycloak', () => {
  it('normalises group paths and adds realm roles; allowed by group', async () => {
    const who = await whoami(await attempt('keycloak', 'kim'));
    expect(who).toMatchObject({ user_id: 'keycloak:kc-kim', email: 'kim@partner.test', groups: ['mcp-users', 'eng/backend', 'offline_access', 'mcp-admin'] });
  });

  it('denies a user whose only group is a subgroup of the same name', async () => {
    await expectDenied(await attempt('keycloak', 'ken'), 'keycloak:kc-ken');
    expect(await account('keycloak:kc-ken')).toMatchObject({ groups: ['eng/mcp-users'] });
  });
});

it('never logs tokens or the providers\' client secrets', () => {
  const text = gateway.logText();
  for (const type of ['google', 'microsoft', 'okta', 'auth0', 'keycloak']) expect(text).not.toContain(`${type}-secret`);
  expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}/);
});
