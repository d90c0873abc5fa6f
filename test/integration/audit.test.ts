/**
 * The audit trail: every security event of a full flow in its own file, with who, which client
 * and which service, and never a token, code or secret.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer } from '../../src/demo/index.ts';
import { HttpSession } from '../support/http-session.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { callMcp, redeem, refresh, runCodeFlow } from '../support/oauth-flow.ts';

let gateway: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-audit-'));
const auditFile = join(dir, 'audit.log');

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { domains: ['example.com'] } },
    services: {
      demo: { upstream: demo.url, default: true },
      eng: { upstream: demo.url, access: { allow: { groups: ['eng'] } } },
    },
    log: { level: 'info', audit_file: auditFile },
  });
});

afterAll(async () => {
  await demo?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('audit trail', () => {
  it('records sign-in, consent, tokens, denials and withdrawals, and nothing secret', async () => {
    const session = new HttpSession();
    const flow = await runCodeFlow(gateway, { session });
    const tokens = await redeem(gateway, flow);
    const refreshed = await refresh(gateway, flow.client.client_id, String(tokens.body.refresh_token));
    expect(refreshed.status).toBe(200);
    const engFlow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/eng/mcp` } });
    const engToken = String((await redeem(gateway, engFlow)).body.access_token);
    expect((await callMcp(gateway, '/eng/mcp', engToken)).status).toBe(403);
    const outsider = await runCodeFlow(gateway, { user: { email: 'eve@elsewhere.test' } });
    expect(outsider.result.kind).toBe('page');
    const list = await session.fetch(`${gateway.origin}/consents`);
    await session.submitForm(`${gateway.origin}/consents`, await list.text(), {}, {});
    await gateway.close();

    const text = readFileSync(auditFile, 'utf8');
    const lines = text.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const events = lines.map((line) => line.event);
    for (const event of ['client.registered', 'sign_in', 'consent.given', 'token.issued', 'token.refreshed', 'access.denied', 'consent.withdrawn']) {
      expect(events).toContain(event);
    }
    expect(lines.every((line) => line.stream === 'audit')).toBe(true);
    expect(lines.find((line) => line.event === 'token.issued')).toMatchObject({ client: flow.client.client_id, account: 'dev:alice@example.com', request_id: expect.any(String) });
    for (const event of ['client.registered', 'token.refreshed']) expect(lines.find((line) => line.event === event)?.request_id).toEqual(expect.any(String));
    expect(lines.find((line) => line.event === 'access.denied' && line.service === 'eng')).toMatchObject({ account: 'dev:alice@example.com', reason: expect.stringContaining('service policy') });
    expect(lines.find((line) => line.event === 'access.denied' && line.account === 'dev:eve@elsewhere.test')).toBeDefined();
    for (const secret of [tokens.body.access_token, tokens.body.refresh_token, refreshed.body.refresh_token, flow.code, engToken]) {
      expect(text).not.toContain(String(secret));
    }
  });
});
