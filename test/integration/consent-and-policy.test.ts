/**
 * Consent withdrawal and per-service access policy, as a person and an MCP server see them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer } from '../../src/demo/index.ts';
import { HttpSession } from '../support/http-session.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { callMcp, redeem, registerClient, runCodeFlow } from '../support/oauth-flow.ts';

let gateway: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { domains: ['example.com'] }, deny: { emails: ['banned@example.com'] } },
    services: {
      demo: { upstream: demo.url, default: true },
      eng: { upstream: demo.url, access: { allow: { groups: ['eng'] } } },
    },
  });
});

afterAll(async () => {
  await gateway?.close();
  await demo?.close();
});

describe('consent', () => {
  it('lists remembered consents and withdrawing one revokes its tokens within a second', async () => {
    const session = new HttpSession();
    const flow = await runCodeFlow(gateway, { session });
    const tokens = await redeem(gateway, flow);
    const accessToken = String(tokens.body.access_token);
    expect((await callMcp(gateway, '/demo/mcp', accessToken)).status).toBe(200);

    const list = await session.fetch(`${gateway.origin}/consents`);
    const html = await list.text();
    expect(list.status).toBe(200);
    expect(html).toContain('oauth-flow test client');
    const withdrawn = await session.submitForm(`${gateway.origin}/consents`, html, {}, {});
    expect(withdrawn.status).toBe(200);
    expect(await withdrawn.text()).toContain('oauth-flow test client');

    await new Promise((resolve) => setTimeout(resolve, 1100));
    const refused = await callMcp(gateway, '/demo/mcp', accessToken);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toContain('error="invalid_token"');
    const refreshed = await fetch(`${gateway.origin}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: String(tokens.body.refresh_token), client_id: flow.client.client_id }),
    });
    expect(refreshed.status).toBe(400);
    expect((await refreshed.json() as { error: string }).error).toBe('invalid_grant');
    expect(gateway.logs.some((line) => line.event === 'consent.withdrawn')).toBe(true);
  });

  it('refuses a withdrawal without the form token', async () => {
    const session = new HttpSession();
    await runCodeFlow(gateway, { session });
    const response = await session.fetch(`${gateway.origin}/consents/withdraw`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'consent=x&csrf=forged',
    });
    expect(response.status).toBe(403);
  });

  it('sends access_denied to the client when the person denies consent', async () => {
    const flow = await runCodeFlow(gateway, { decision: 'deny' });
    expect(flow.result.kind).toBe('redirect');
    if (flow.result.kind !== 'redirect') return;
    expect(flow.result.url.searchParams.get('error')).toBe('access_denied');
    expect(flow.result.url.searchParams.get('iss')).toBe(gateway.issuer);
    expect([302, 303]).toContain(flow.result.status);
  });
});

describe('registered clients', () => {
  it('expires a client no one consented to, and keeps one after the first consent', async () => {
    const unused = await registerClient(gateway, ['http://127.0.0.1:53999/callback']);
    const record = await gateway.store.get('Client', unused.client_id);
    expect(record?.expiresAt).toBeGreaterThan(Date.now() / 1000 + 6 * 86400);
    expect(record?.expiresAt).toBeLessThanOrEqual(Date.now() / 1000 + 7 * 86400 + 1);

    const flow = await runCodeFlow(gateway);
    expect(flow.code).toBeTruthy();
    expect((await gateway.store.get('Client', flow.client.client_id))?.expiresAt).toBeUndefined();
  });
});

describe('access policy', () => {
  it('applies deny rules over allow rules at sign-in', async () => {
    const flow = await runCodeFlow(gateway, { user: { email: 'banned@example.com' } });
    expect(flow.result.kind).toBe('page');
    if (flow.result.kind !== 'page') return;
    expect(flow.result.status).toBe(403);
    expect(flow.result.html).toContain('not allowed');
  });

  it("applies a service's own access rules on every request", async () => {
    const outsider = await runCodeFlow(gateway, { user: { email: 'sam@example.com', groups: 'sales' }, params: { resource: `${gateway.origin}/eng/mcp` } });
    const outsiderToken = String((await redeem(gateway, outsider)).body.access_token);
    const refused = await callMcp(gateway, '/eng/mcp', outsiderToken);
    expect(refused.status).toBe(403);
    expect(gateway.logs.some((line) => line.event === 'access.denied' && line.service === 'eng')).toBe(true);

    const engineer = await runCodeFlow(gateway, { user: { email: 'erin@example.com', groups: 'eng' }, params: { resource: `${gateway.origin}/eng/mcp` } });
    const engineerToken = String((await redeem(gateway, engineer)).body.access_token);
    expect((await callMcp(gateway, '/eng/mcp', engineerToken)).status).toBe(200);
  });
});
