/**
 * The `github` identity provider through a running gateway, against a local stand-in for
 * GitHub (test/support/github-standin.ts): sign-in with the MCP SDK client, the normalised
 * identity, users without a verified e-mail, org and team rules, deny rules, membership
 * re-read at the gateway's token refresh, and GitHub Enterprise Server URLs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer, type DemoIdentity } from '../../src/demo/index.ts';
import { HttpSession } from '../support/http-session.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { connectWithOAuth, MemoryOAuthProvider, submitConsent } from '../support/mcp-oauth-client.ts';
import { authorizeUrl, callMcp, pkcePair, refresh, registerClient, tokenRequest } from '../support/oauth-flow.ts';
import { signInAtGitHub, startGitHubStandin, type GitHubStandin } from '../support/github-standin.ts';

let github: GitHubStandin;
let gateway: TestGateway;
let enterprise: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;

const verified = (email: string) => [{ email, primary: true, verified: true }];

beforeAll(async () => {
  github = await startGitHubStandin({
    clients: [{ client_id: 'gh-client', client_secret: 'gh-client-secret' }],
    // Two entries a page, so membership takes several pages to read.
    maxPerPage: 2,
    users: {
      alice: {
        id: 1001, name: 'Alice Liddell',
        emails: [{ email: 'alice@old.example.org', primary: false, verified: true }, { email: 'Alice@Example.com', primary: true, verified: true }],
        orgs: ['Acme', 'knitting-club', 'chess-club'], teams: ['acme/platform', 'acme/security', 'chess-club/players'],
      },
      // In the org, but has no verified address: the primary one is unverified.
      bob: { id: 1002, name: null, emails: [{ email: 'bob@example.com', primary: true, verified: false }], orgs: ['acme'], teams: [] },
      carol: { id: 1003, name: 'Carol', emails: verified('carol@example.com'), orgs: ['other-org'], teams: ['other-org/platform'] },
      // In the org and in the denied one.
      dave: { id: 1004, name: 'Dave', emails: verified('dave@example.com'), orgs: ['acme', 'contractors-inc'], teams: ['acme/platform'] },
      // Memberships change during the tests.
      erin: { id: 1005, name: 'Erin', emails: verified('erin@example.com'), orgs: ['acme'], teams: ['acme/platform'] },
      frank: { id: 1006, name: 'Frank', emails: verified('frank@example.com'), orgs: ['acme'], teams: [] },
    },
  });
  demo = await startDemoServer({ port: 0 });
  const provider = { id: 'gh', type: 'github', client_id: 'gh-client', client_secret: 'gh-client-secret', base_url: github.url, api_url: github.url };
  gateway = await startTestGateway({
    identity_providers: [provider],
    access: { allow: { github_orgs: ['acme'] }, deny: { github_orgs: ['contractors-inc'] } },
    services: {
      demo: { upstream: demo.url, default: true },
      mail: { upstream: demo.url, access: { allow: { domains: ['example.com'] } } },
      platform: { upstream: demo.url, access: { allow: { github_teams: ['ACME/Platform'] } } },
    },
  });
  // GitHub Enterprise Server: only base_url; the API is then at <base_url>/api/v3.
  enterprise = await startTestGateway({
    identity_providers: [{ ...provider, id: 'ghe', name: 'GitHub Enterprise', api_url: undefined }],
    access: { allow: { users: ['*'] } },
    services: { demo: { upstream: demo.url } },
  });
});

afterAll(async () => {
  await gateway?.close();
  await enterprise?.close();
  await demo?.close();
  await github?.close();
});

type Outcome =
  | { kind: 'redirect'; url: URL }
  | { kind: 'page'; status: number; html: string };

/** From the gateway's /authorize through the stand-in's sign-in (as `login`) and consent, back to the client. */
async function signInThroughGateway(gw: TestGateway, url: URL, login: string, redirectUri: string, session = new HttpSession()): Promise<Outcome> {
  const isClientRedirect = (target: URL) => target.href.startsWith(redirectUri);
  const toGitHub = await session.follow(url, {}, { stopWhen: (target) => target.origin === github.url || isClientRedirect(target) });
  if (isClientRedirect(toGitHub.url)) return { kind: 'redirect', url: toGitHub.url };
  if (toGitHub.url.origin !== github.url) throw new Error(`expected GitHub, got ${toGitHub.response.status} at ${toGitHub.url.href}: ${(await toGitHub.response.text()).slice(0, 300)}`);
  const callback = await signInAtGitHub(session, toGitHub.url, login);
  expect(callback.href.startsWith(`${gw.issuer}callback/`)).toBe(true);
  const after = await session.follow(callback, {}, { stopWhen: isClientRedirect });
  if (isClientRedirect(after.url)) return { kind: 'redirect', url: after.url };
  const html = await after.response.text();
  if (after.response.status === 200 && html.includes('name="decision"')) {
    return { kind: 'redirect', url: await submitConsent(session, after.url, html, isClientRedirect, 'approve') };
  }
  return { kind: 'page', status: after.response.status, html };
}

interface Tokens { access: string; refresh: string; clientId: string }

/** A registered client's authorization for one service, signed in as `login`, redeemed. */
async function tokensFor(gw: TestGateway, login: string, service: string): Promise<Tokens> {
  const redirectUri = 'http://127.0.0.1:53301/callback';
  const client = await registerClient(gw, [redirectUri]);
  const { verifier, challenge } = pkcePair();
  const url = authorizeUrl(gw, { client_id: client.client_id, redirect_uri: redirectUri, code_challenge: challenge, resource: `${gw.origin}/${service}/mcp` });
  const outcome = await signInThroughGateway(gw, url, login, redirectUri);
  if (outcome.kind !== 'redirect') throw new Error(`${login} was refused (${outcome.status}): ${outcome.html.slice(0, 300)}`);
  const code = outcome.url.searchParams.get('code');
  if (!code) throw new Error(`no code in ${outcome.url.href}`);
  const token = await tokenRequest(gw, { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: client.client_id });
  expect(token.status).toBe(200);
  return { access: String(token.body.access_token), refresh: String(token.body.refresh_token), clientId: client.client_id };
}

/** The sign-in page a person sees for `login` (expects no code). */
async function refusedPage(gw: TestGateway, login: string): Promise<{ status: number; html: string }> {
  const redirectUri = 'http://127.0.0.1:53302/callback';
  const client = await registerClient(gw, [redirectUri]);
  const url = authorizeUrl(gw, { client_id: client.client_id, redirect_uri: redirectUri, code_challenge: pkcePair().challenge });
  const outcome = await signInThroughGateway(gw, url, login, redirectUri);
  if (outcome.kind !== 'page') throw new Error(`${login} was not refused: ${outcome.url.href}`);
  return outcome;
}

async function whoami(gw: TestGateway, login: string): Promise<DemoIdentity> {
  const redirect = `http://127.0.0.1:${53310 + Math.floor(Math.random() * 80)}/callback`;
  const oauth = new MemoryOAuthProvider(redirect);
  const client = await connectWithOAuth(`${gw.origin}/demo/mcp`, oauth, async (url) => {
    const outcome = await signInThroughGateway(gw, url, login, redirect);
    if (outcome.kind !== 'redirect') throw new Error(`${login} was refused (${outcome.status})`);
    return outcome.url;
  });
  try {
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    return JSON.parse((result.content as Array<{ text: string }>)[0]!.text) as DemoIdentity;
  } finally {
    await client.close();
  }
}

describe('sign-in with GitHub', () => {
  it('signs in with the MCP SDK client; the identity is the numeric id and the primary verified address', async () => {
    const before = github.authorizeRequests.length;
    const who = await whoami(gateway, 'alice');
    expect(who).toMatchObject({ user_id: 'gh:1001', email: 'alice@example.com', name: 'Alice Liddell', provider: 'gh', groups: [] });
    // The gateway's own leg: PKCE S256, its state, read:org because rules name orgs; none of the client's parameters.
    const authorize = github.authorizeRequests[before]!;
    expect(authorize.get('scope')).toBe('read:user user:email read:org');
    expect(authorize.get('code_challenge_method')).toBe('S256');
    expect(authorize.get('redirect_uri')).toBe(`${gateway.issuer}callback/gh`);
    expect(authorize.has('resource')).toBe(false);
    expect(gateway.logs.some((line) => line.event === 'sign_in' && line.account === 'gh:1001' && line.rule === 'github_orgs: acme')).toBe(true);
  });

  it('a user without a verified e-mail signs in, has no e-mail, and fails an e-mail domain rule', async () => {
    const who = await whoami(gateway, 'bob');
    expect(who).toMatchObject({ user_id: 'gh:1002', email: null, name: 'bob' });
    const tokens = await tokensFor(gateway, 'bob', 'mail');
    expect((await callMcp(gateway, '/mail/mcp', tokens.access)).status).toBe(403);
    const alice = await tokensFor(gateway, 'alice', 'mail');
    expect((await callMcp(gateway, '/mail/mcp', alice.access)).status).toBe(200);
  });
});

describe('org and team rules', () => {
  it('refuses a non-member with a page that says why, without naming the org', async () => {
    const page = await refusedPage(gateway, 'carol');
    expect(page.status).toBe(403);
    expect(page.html).toContain('Your GitHub account is not a member of an organization or team allowed to use this gateway.');
    expect(page.html).not.toContain('acme');
    expect(gateway.logs.some((line) => line.event === 'access.denied' && line.account === 'gh:1003'
      && line.reason === 'no allow rule matched (not in an allowed GitHub organization or team)')).toBe(true);
  });

  it('lets a deny org rule win over the allow rule', async () => {
    const page = await refusedPage(gateway, 'dave');
    expect(page.status).toBe(403);
    expect(page.html).toContain('Your account is not allowed to use this gateway.');
    expect(gateway.logs.some((line) => line.event === 'access.denied' && line.account === 'gh:1004' && line.reason === 'deny rule github_orgs: contractors-inc')).toBe(true);
  });

  it('a service team rule admits team members only', async () => {
    const alice = await tokensFor(gateway, 'alice', 'platform');
    expect((await callMcp(gateway, '/platform/mcp', alice.access)).status).toBe(200);
    const frank = await tokensFor(gateway, 'frank', 'platform');
    const refused = await callMcp(gateway, '/platform/mcp', frank.access);
    expect(refused.status).toBe(403);
    expect(JSON.stringify(await refused.json())).toContain('you do not have access to');
  });
});

describe('membership changes reach the gateway at token refresh', () => {
  it('team removed: the refresh succeeds, and the new token is refused by the team-only service', async () => {
    const first = await tokensFor(gateway, 'erin', 'platform');
    expect((await callMcp(gateway, '/platform/mcp', first.access)).status).toBe(200);

    github.setMembership('erin', { teams: [] });
    // Until a refresh, the gateway knows the membership read at sign-in.
    expect((await callMcp(gateway, '/platform/mcp', first.access)).status).toBe(200);

    const refreshed = await refresh(gateway, first.clientId, first.refresh);
    expect(refreshed.status).toBe(200);
    const second = { access: String(refreshed.body.access_token), refresh: String(refreshed.body.refresh_token) };
    // Still in the org, so the gateway-wide rule allows the refresh; the service's team rule does not.
    expect((await callMcp(gateway, '/platform/mcp', second.access)).status).toBe(403);
    expect((await callMcp(gateway, '/platform/mcp', first.access)).status).toBe(403);
    expect(gateway.logs.some((line) => line.event === 'account.reloaded' && line.account === 'gh:1005')).toBe(true);

    github.setMembership('erin', { orgs: [] });
    const outOfOrg = await refresh(gateway, first.clientId, second.refresh);
    // Out of the org: the gateway-wide rule refuses the refresh itself.
    expect(outOfOrg.status).toBe(400);
    expect(outOfOrg.body.error).toBe('invalid_grant');

    // The refused refresh token was not spent: back in the org and team, it works again.
    github.setMembership('erin', { orgs: ['acme'], teams: ['acme/platform'] });
    const readmitted = await refresh(gateway, first.clientId, second.refresh);
    expect(readmitted.status).toBe(200);
    expect((await callMcp(gateway, '/platform/mcp', String(readmitted.body.access_token))).status).toBe(200);
  });

  it('a GitHub authorization revoked by the user fails the next refresh with invalid_grant', async () => {
    const tokens = await tokensFor(gateway, 'frank', 'demo');
    github.revokeTokens('frank');
    const refused = await refresh(gateway, tokens.clientId, tokens.refresh);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_grant');
    expect(gateway.logs.some((line) => line.event === 'account.reload_refused' && line.account === 'gh:1006')).toBe(true);
  });

  it('keeps the GitHub token sealed in the store, and never logs tokens or secrets', async () => {
    const record = await gateway.store.get('upstream-token', 'gh:1001');
    expect(record?.value.provider).toBe('gh');
    expect(JSON.stringify(record?.value)).not.toContain('gho_');
    const text = gateway.logText();
    expect(text).not.toContain('gh-client-secret');
    expect(text).not.toMatch(/gh[our]_[A-Za-z0-9_-]{10,}/);
  });
});

describe('GitHub Enterprise Server', () => {
  it('uses base_url for sign-in and <base_url>/api/v3 for the API; asks no read:org without org rules', async () => {
    const before = github.requests.length;
    const beforeAuthorize = github.authorizeRequests.length;
    const who = await whoami(enterprise, 'carol');
    expect(who).toMatchObject({ user_id: 'ghe:1003', email: 'carol@example.com', provider: 'ghe' });
    const paths = github.requests.slice(before).map((request) => request.path);
    expect(paths).toEqual(expect.arrayContaining(['/login/oauth/authorize', '/login/oauth/access_token', '/api/v3/user', '/api/v3/user/emails']));
    expect(paths.filter((path) => path.startsWith('/user'))).toEqual([]);
    expect(paths.some((path) => path.includes('/orgs') || path.includes('/teams'))).toBe(false);
    expect(github.authorizeRequests[beforeAuthorize]?.get('scope')).toBe('read:user user:email');
    // Without org rules the GitHub token is not kept.
    expect(await enterprise.store.get('upstream-token', 'ghe:1003')).toBeUndefined();
  });
});
