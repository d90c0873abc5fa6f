import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGitHubStandin, type GitHubStandin } from '../../test/support/github-standin.ts';
import { createGitHubProvider, githubApiUrl, identityFromGitHub, membershipFromGitHub, nextPageUrl, type GitHubProviderOptions } from './github.ts';
import { SignInError, type IdentityProvider } from './provider.ts';

describe('identityFromGitHub', () => {
  const user = { login: 'octocat', id: 583231, name: 'The Octocat', avatar_url: 'https://avatars.githubusercontent.com/u/583231' };

  it('takes the numeric id as subject and the primary verified address', () => {
    expect(identityFromGitHub('gh', user, [
      { email: 'old@example.org', primary: false, verified: true },
      { email: 'Octo@Example.com', primary: true, verified: true },
    ])).toEqual({
      provider: 'gh', subject: '583231', email: 'octo@example.com', emailVerified: true,
      name: 'The Octocat', picture: 'https://avatars.githubusercontent.com/u/583231', groups: [],
    });
  });

  it('falls back to the first verified address when the primary one is unverified', () => {
    const identity = identityFromGitHub('gh', user, [
      { email: 'primary@example.com', primary: true, verified: false },
      { email: 'second@example.com', primary: false, verified: false },
      { email: 'third@example.com', primary: false, verified: true },
    ]);
    expect(identity).toMatchObject({ email: 'third@example.com', emailVerified: true });
  });

  it('reports no address at all when none is verified (never an unverified one)', () => {
    const identity = identityFromGitHub('gh', user, [{ email: 'claimed@example.com', primary: true, verified: false }]);
    expect(identity.email).toBeUndefined();
    expect(identity.emailVerified).toBe(false);
    expect(identityFromGitHub('gh', user, 'not a list').email).toBeUndefined();
  });

  it('uses the login as the name when the account has none, and keeps groups empty', () => {
    const identity = identityFromGitHub('gh', { id: 7, login: 'noname', name: null }, [], { orgs: ['acme'], teams: ['acme/platform'] });
    expect(identity).toMatchObject({ name: 'noname', groups: [], githubOrgs: ['acme'], githubTeams: ['acme/platform'] });
    expect(identityFromGitHub('gh', { id: 7 }, []).githubOrgs).toBeUndefined();
  });

  it('refuses a user without a numeric id (a login alone is not a stable subject)', () => {
    for (const bad of [{ login: 'octocat' }, { id: '583231' }, { id: 1.5 }, { id: 0 }, null]) {
      expect(() => identityFromGitHub('gh', bad, [])).toThrow(SignInError);
    }
  });
});

describe('membershipFromGitHub', () => {
  it('lower-cases org logins and names teams org/slug, without duplicates', () => {
    expect(membershipFromGitHub(
      [{ login: 'Acme' }, { login: 'acme' }, { login: '' }, {}],
      [{ slug: 'Platform', organization: { login: 'ACME' } }, { slug: 'x' }, { organization: { login: 'a' } }],
    )).toEqual({ orgs: ['acme'], teams: ['acme/platform'] });
  });
});

describe('nextPageUrl', () => {
  const base = new URL('https://api.github.com/user/teams?per_page=100');

  it('finds rel="next" among GitHub Link entries', () => {
    const link = '<https://api.github.com/user/teams?per_page=100&page=2>; rel="next", <https://api.github.com/user/teams?per_page=100&page=5>; rel="last"';
    expect(nextPageUrl(link, base)?.href).toBe('https://api.github.com/user/teams?per_page=100&page=2');
    expect(nextPageUrl('<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=3>; rel="next"', base)?.searchParams.get('page')).toBe('3');
  });

  it('accepts unquoted and multi-valued rel, and nothing else', () => {
    expect(nextPageUrl('</user/teams?page=2>; rel=next', base)?.href).toBe('https://api.github.com/user/teams?page=2');
    expect(nextPageUrl('<https://api.github.com/y>; rel="last next"', base)?.href).toBe('https://api.github.com/y');
    expect(nextPageUrl('<https://api.github.com/y>; rel="nextish"', base)).toBeUndefined();
    expect(nextPageUrl('<https://api.github.com/y>; rel="last"', base)).toBeUndefined();
    expect(nextPageUrl(null, base)).toBeUndefined();
  });
});

describe('githubApiUrl', () => {
  it('defaults to api.github.com, and to <base_url>/api/v3 for GitHub Enterprise Server', () => {
    expect(githubApiUrl(undefined, undefined)).toBe('https://api.github.com');
    expect(githubApiUrl('https://github.com/', undefined)).toBe('https://api.github.com');
    expect(githubApiUrl('https://ghe.example.com', undefined)).toBe('https://ghe.example.com/api/v3');
    expect(githubApiUrl('https://ghe.example.com', 'https://ghe-api.example.com/v3/')).toBe('https://ghe-api.example.com/v3');
  });
});

describe('the github provider against the stand-in', () => {
  let standin: GitHubStandin;
  let appStandin: GitHubStandin;
  const callbackUrl = 'http://127.0.0.1:9/callback/gh';

  beforeAll(async () => {
    const users = () => ({
      alice: {
        id: 1001, name: 'Alice', emails: [{ email: 'alice@example.com', primary: true, verified: true }],
        orgs: ['Acme', 'other', 'third'], teams: ['acme/platform', 'acme/Security', 'other/ops'],
      },
      bob: { id: 1002, emails: [{ email: 'bob@example.com', primary: true, verified: false }], orgs: [], teams: [] },
    });
    // Two entries a page: three orgs and three teams take two pages each.
    standin = await startGitHubStandin({ users: users(), clients: [{ client_id: 'cid', client_secret: 'secret' }], maxPerPage: 2 });
    appStandin = await startGitHubStandin({ users: users(), clients: [{ client_id: 'cid', client_secret: 'secret' }], tokenStyle: 'github-app' });
  });

  afterAll(async () => {
    await standin?.close();
    await appStandin?.close();
  });

  function provider(overrides: Partial<GitHubProviderOptions> = {}, at = standin): IdentityProvider {
    return createGitHubProvider({ id: 'gh', clientId: 'cid', clientSecret: 'secret', baseUrl: at.url, apiUrl: at.url, readMembership: false, ...overrides });
  }

  /** begin → the stand-in's authorize (auto-approved for `login`) → complete. */
  async function signIn(idp: IdentityProvider, login: string, tamper: (secrets: Record<string, string>, back: URL) => void = () => {}) {
    const start = await idp.begin({ state: 'state-1', callbackUrl });
    const authorize = new URL(start.url);
    authorize.searchParams.set('login', login);
    const answer = await fetch(authorize, { redirect: 'manual' });
    const back = new URL(answer.headers.get('location') ?? '');
    tamper(start.secrets, back);
    return idp.complete({ currentUrl: back, state: 'state-1', secrets: start.secrets });
  }

  it('asks for read:user and user:email with PKCE S256 and the state, and nothing of the MCP client', async () => {
    const start = await provider({ scopes: ['repo'] }).begin({ state: 'abc', callbackUrl });
    const url = new URL(start.url);
    expect(`${url.origin}${url.pathname}`).toBe(`${standin.url}/login/oauth/authorize`);
    expect(Object.fromEntries(url.searchParams)).toEqual({
      client_id: 'cid', response_type: 'code', redirect_uri: callbackUrl, scope: 'read:user user:email repo', state: 'abc',
      code_challenge: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), code_challenge_method: 'S256',
    });
    expect(start.secrets.verifier).toMatch(/^[A-Za-z0-9_-]{43,}$/);
  });

  it('adds read:org only when rules name orgs or teams', async () => {
    const start = await provider({ readMembership: true }).begin({ state: 'abc', callbackUrl });
    expect(new URL(start.url).searchParams.get('scope')).toBe('read:user user:email read:org');
  });

  it('signs in: numeric subject, verified primary email, tokens; no membership unless rules need it', async () => {
    const result = await signIn(provider(), 'alice');
    expect(result.identity).toEqual({
      provider: 'gh', subject: '1001', email: 'alice@example.com', emailVerified: true, name: 'Alice',
      picture: 'https://avatars.example.test/u/1001', groups: [],
    });
    // GitHub's comma-separated scope, kept space-separated; OAuth app tokens have no expiry.
    expect(result.tokens).toEqual({ accessToken: expect.stringMatching(/^gho_/), scope: 'read:user user:email' });
    expect(standin.requests.some((request) => request.path === '/user/orgs')).toBe(false);
  });

  it('reads every page of orgs and teams when rules need them', async () => {
    const before = standin.requests.length;
    const { identity } = await signIn(provider({ readMembership: true }), 'alice');
    expect(identity.githubOrgs).toEqual(['acme', 'other', 'third']);
    expect(identity.githubTeams).toEqual(['acme/platform', 'acme/security', 'other/ops']);
    const pages = standin.requests.slice(before).filter((request) => request.path === '/user/teams').map((request) => request.query.get('page'));
    expect(pages).toEqual([null, '2']);
    expect(standin.requests.slice(before).find((request) => request.path === '/user/orgs')?.query.get('per_page')).toBe('100');
  });

  it('turns GitHub\'s 200-with-error token answers into sign-in errors naming the error', async () => {
    await expect(signIn(provider({ clientSecret: 'wrong' }), 'alice')).rejects.toThrow(/incorrect_client_credentials/);
    await expect(signIn(provider(), 'alice', (secrets) => { secrets.verifier = 'x'.repeat(43); })).rejects.toThrow(/bad_verification_code.*code_verifier/);
    const error = await signIn(provider(), 'alice', (_secrets, back) => { back.pathname = '/elsewhere'; }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SignInError);
    expect((error as SignInError).message).toMatch(/redirect_uri_mismatch/);
    expect((error as SignInError).userMessage).toBe('GitHub could not sign you in.');
  });

  it('refuses a callback whose state is not the one it sent', async () => {
    const idp = provider();
    const start = await idp.begin({ state: 'state-1', callbackUrl });
    const authorize = new URL(start.url);
    authorize.searchParams.set('login', 'alice');
    authorize.searchParams.set('state', 'forged');
    const back = new URL((await fetch(authorize, { redirect: 'manual' })).headers.get('location') ?? '');
    await expect(idp.complete({ currentUrl: back, state: 'state-1', secrets: start.secrets })).rejects.toThrow(/unexpected "state"/);
  });

  it('reports a cancelled authorization clearly', async () => {
    const idp = provider();
    const back = new URL(`${callbackUrl}?error=access_denied&error_description=denied&state=state-1`);
    await expect(idp.complete({ currentUrl: back, state: 'state-1', secrets: {} })).rejects.toMatchObject({ userMessage: 'Sign-in was cancelled at GitHub.' });
  });

  it('GitHub App tokens: keeps expiry and refresh token, and refreshes them (rotating the refresh token)', async () => {
    const idp = provider({ readMembership: true }, appStandin);
    const { identity, tokens } = await signIn(idp, 'alice');
    expect(tokens).toMatchObject({ accessToken: expect.stringMatching(/^ghu_/), refreshToken: expect.stringMatching(/^ghr_/) });
    expect(tokens!.expiresAt! - Math.floor(Date.now() / 1000)).toBeGreaterThan(8 * 3600 - 10);
    expect(tokens!.scope).toBeUndefined();

    appStandin.expireAccessTokens('alice');
    await expect(idp.reload!(identity, tokens!)).rejects.toBeInstanceOf(SignInError);
    const fresh = await idp.refresh!(tokens!.refreshToken!);
    expect(fresh.refreshToken).toMatch(/^ghr_/);
    expect(fresh.refreshToken).not.toBe(tokens!.refreshToken);
    appStandin.setMembership('alice', { orgs: ['acme'] });
    expect((await idp.reload!(identity, fresh)).identity.githubOrgs).toEqual(['acme']);
    // GitHub rotates refresh tokens: the old one is refused, with GitHub's 200-with-error.
    const refused = await idp.refresh!(tokens!.refreshToken!).catch((caught: unknown) => caught);
    expect(refused).toBeInstanceOf(SignInError);
    expect((refused as Error).message).toMatch(/bad_refresh_token/);
  });

  it('a refresh that cannot reach GitHub is not a refusal', async () => {
    const idp = provider({ baseUrl: 'http://127.0.0.1:9' });
    const error = await idp.refresh!('ghr_x').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(SignInError);
  });

  it('reload: re-reads membership, and rejects with SignInError once GitHub refuses the token', async () => {
    const idp = provider({ readMembership: true });
    expect(provider().reload).toBeUndefined();
    const { identity, tokens } = await signIn(idp, 'bob');
    expect(identity.githubOrgs).toEqual([]);
    standin.setMembership('bob', { orgs: ['acme'], teams: ['acme/platform'] });
    const { identity: now } = await idp.reload!(identity, tokens!);
    expect(now).toMatchObject({ subject: '1002', githubOrgs: ['acme'], githubTeams: ['acme/platform'] });
    expect(now.email).toBeUndefined();

    standin.revokeTokens('bob');
    await expect(idp.reload!(identity, tokens!)).rejects.toBeInstanceOf(SignInError);
    await expect(idp.reload!({ ...identity, subject: '1001' }, (await signIn(idp, 'bob')).tokens!)).rejects.toThrow(/belongs to GitHub user 1002/);
  });

  it('reload: an unreachable GitHub is not a SignInError (the caller keeps what it knew)', async () => {
    const idp = provider({ readMembership: true, apiUrl: 'http://127.0.0.1:9' });
    const error = await idp.reload!({ provider: 'gh', subject: '1', emailVerified: false, groups: [] }, { accessToken: 'gho_x' }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(SignInError);
  });
});
