/**
 * Refresh tokens: rotated on every use, with a short grace window in which the previous token
 * still works (concurrent client processes must not log each other out), and reuse after the
 * window revoking the whole grant (RFC 9700 §4.14.2; checklist §7). Access policy
 * is applied again at every refresh (the account must still exist and be allowed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { startDemoServer, type DemoServer } from '../../src/demo/index.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { callMcp, eventually, redeem, refresh, registerClient, runCodeFlow, type FlowGateway } from '../support/oauth-flow.ts';

const DEV_IDP = [{ id: 'dev', type: 'dev' }];
const SERVICES = (upstream: string) => ({ demo: { upstream, scopes: ['tools.read', 'tools.call'] } });

let demo: DemoServer;
/** Grace window of 2 s. */
let gateway: TestGateway;
/** Grace window of 1 s, for reuse after the window. */
let shortGrace: TestGateway;
/** Only carol@example.com may sign in. */
let restricted: TestGateway;

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
  gateway = await startTestGateway({
    identity_providers: DEV_IDP,
    access: { allow: { users: ['*'] } },
    tokens: { refresh_grace_seconds: 2 },
    services: SERVICES(demo.url),
  });
  shortGrace = await startTestGateway({
    identity_providers: DEV_IDP,
    access: { allow: { users: ['*'] } },
    tokens: { refresh_grace_seconds: 1 },
    services: SERVICES(demo.url),
  });
  restricted = await startTestGateway({
    identity_providers: DEV_IDP,
    access: { allow: { emails: ['carol@example.com'] } },
    services: SERVICES(demo.url),
  });
});

afterAll(async () => {
  await gateway?.close();
  await shortGrace?.close();
  await restricted?.close();
  await demo?.close();
});

interface Session {
  clientId: string;
  accessToken: string;
  refreshToken: string;
}

/** Signs in through a fresh public client and redeems the code. */
async function signIn(gw: FlowGateway, email = 'alice@example.com'): Promise<Session> {
  const flow = await runCodeFlow(gw, { user: { email } });
  if (!flow.code) throw new Error(`no code: ${flow.result.kind === 'page' ? flow.result.html.slice(0, 300) : flow.result.url.href}`);
  const tokens = await redeem(gw, flow);
  expect(tokens.status).toBe(200);
  return { clientId: flow.client.client_id, accessToken: String(tokens.body.access_token), refreshToken: String(tokens.body.refresh_token) };
}

async function expectRefreshRefused(gw: FlowGateway, clientId: string, refreshToken: string): Promise<void> {
  const answer = await refresh(gw, clientId, refreshToken);
  expect(answer.status).toBe(400);
  expect(answer.body.error).toBe('invalid_grant');
  expect(answer.body.access_token).toBeUndefined();
}

const mcpStatus = async (gw: FlowGateway, token: string) => (await callMcp(gw, '/demo/mcp', token)).status;

describe('refresh token rotation', () => {
  it('issues a new refresh token on every use, and working access tokens for the same audience and scope', async () => {
    const session = await signIn(gateway);
    const seen = new Set([session.refreshToken]);
    let current = session.refreshToken;
    for (let round = 0; round < 3; round++) {
      const answer = await refresh(gateway, session.clientId, current);
      expect(answer.status).toBe(200);
      expect(answer.headers.get('cache-control')).toContain('no-store');
      expect(answer.body).toMatchObject({ token_type: 'Bearer', expires_in: 3600, scope: 'tools.read tools.call' });
      const next = String(answer.body.refresh_token);
      expect(seen.has(next)).toBe(false);
      seen.add(next);
      current = next;
      const accessToken = String(answer.body.access_token);
      expect(decodeJwt(accessToken)).toMatchObject({ aud: `${gateway.origin}/demo/mcp`, sub: 'dev:alice@example.com', client_id: session.clientId });
      expect(await mcpStatus(gateway, accessToken)).toBe(200);
    }
  });

  it('still accepts the previous refresh token within refresh_grace_seconds, without revoking anything', async () => {
    const session = await signIn(gateway);
    const first = await refresh(gateway, session.clientId, session.refreshToken);
    expect(first.status).toBe(200);
    const again = await refresh(gateway, session.clientId, session.refreshToken);
    expect(again.status).toBe(200);
    expect(again.body.refresh_token).not.toBe(first.body.refresh_token);
    // Both successors are valid until one of them is used; the access tokens all work.
    expect(await mcpStatus(gateway, session.accessToken)).toBe(200);
    expect(await mcpStatus(gateway, String(first.body.access_token))).toBe(200);
    expect(await mcpStatus(gateway, String(again.body.access_token))).toBe(200);
    const onward = await refresh(gateway, session.clientId, String(again.body.refresh_token));
    expect(onward.status).toBe(200);
    // One current refresh token: the used successor's sibling is retired, and so is the
    // original, though still within its grace window; neither revokes the grant.
    await expectRefreshRefused(gateway, session.clientId, String(first.body.refresh_token));
    await expectRefreshRefused(gateway, session.clientId, session.refreshToken);
    expect((await refresh(gateway, session.clientId, String(onward.body.refresh_token))).status).toBe(200);
    expect(await mcpStatus(gateway, String(onward.body.access_token))).toBe(200);
  });

  it('answers 10 concurrent refreshes of one token with 10 token responses and no server error', async () => {
    const session = await signIn(gateway);
    const answers = await Promise.all(Array.from({ length: 10 }, () => refresh(gateway, session.clientId, session.refreshToken)));
    expect(answers.map((answer) => answer.status)).toEqual(Array(10).fill(200));
    const rotated = new Set(answers.map((answer) => String(answer.body.refresh_token)));
    expect(rotated.size).toBe(10);
    expect(rotated.has(session.refreshToken)).toBe(false);
    const last = answers[9]!;
    const onward = await refresh(gateway, session.clientId, String(last.body.refresh_token));
    expect(onward.status).toBe(200);
    expect(await mcpStatus(gateway, String(last.body.access_token))).toBe(200);
    // The other nine successors are retired once one of them was used; the grant lives on.
    for (const answer of answers.slice(0, 9)) await expectRefreshRefused(gateway, session.clientId, String(answer.body.refresh_token));
    expect((await refresh(gateway, session.clientId, String(onward.body.refresh_token))).status).toBe(200);
  });

  it('lets exactly one of two siblings used at the same moment continue the line', async () => {
    const session = await signIn(gateway);
    const [a, b] = await Promise.all([0, 1].map(() => refresh(gateway, session.clientId, session.refreshToken)));
    const raced = await Promise.all([a!, b!].map((answer) => refresh(gateway, session.clientId, String(answer.body.refresh_token))));
    expect(raced.map((answer) => answer.status).sort()).toEqual([200, 400]);
    const winner = raced.find((answer) => answer.status === 200)!;
    expect((await refresh(gateway, session.clientId, String(winner.body.refresh_token))).status).toBe(200);
  });

  it('revokes the whole grant when a refresh token is reused after the grace window', async () => {
    const session = await signIn(shortGrace);
    const rotated = await refresh(shortGrace, session.clientId, session.refreshToken);
    expect(rotated.status).toBe(200);
    const newest = await refresh(shortGrace, session.clientId, String(rotated.body.refresh_token));
    expect(newest.status).toBe(200);
    const newestAccess = String(newest.body.access_token);
    expect(await mcpStatus(shortGrace, newestAccess)).toBe(200);

    // Store timestamps are whole seconds: 2.2 s is past a 1 s window whatever the rounding.
    await new Promise((resolve) => setTimeout(resolve, 2200));
    await expectRefreshRefused(shortGrace, session.clientId, session.refreshToken);

    // The newest refresh token, never used, went with the grant; so did every access token.
    await expectRefreshRefused(shortGrace, session.clientId, String(newest.body.refresh_token));
    expect(await eventually(async () => (await mcpStatus(shortGrace, newestAccess)) === 401, 1500)).toBe(true);
    expect(await mcpStatus(shortGrace, session.accessToken)).toBe(401);
  });

  it('refuses a refresh token presented by another client', async () => {
    const session = await signIn(gateway);
    const other = await registerClient(gateway, ['http://127.0.0.1/other']);
    await expectRefreshRefused(gateway, other.client_id, session.refreshToken);
    // Without client authentication at all, the request is not even a client's.
    const anonymous = await refresh(gateway, '', session.refreshToken, { client_id: undefined });
    expect(anonymous.status).toBe(400);
    expect(anonymous.body.error).toBe('invalid_request');
  });
});

describe('policy is applied again at refresh', () => {
  it('refuses to refresh once the account is gone (findAccount answers undefined)', async () => {
    const session = await signIn(restricted, 'carol@example.com');
    const first = await refresh(restricted, session.clientId, session.refreshToken);
    expect(first.status).toBe(200);

    await restricted.store.delete('account', 'dev:carol@example.com');
    await expectRefreshRefused(restricted, session.clientId, String(first.body.refresh_token));
  });

  it('does not let a user outside access.allow sign in in the first place', async () => {
    const flow = await runCodeFlow(restricted, { user: { email: 'mallory@example.com' } });
    expect(flow.code).toBeUndefined();
    expect(flow.result.kind).toBe('page');
    expect(flow.result.status).toBe(403);
  });
});
