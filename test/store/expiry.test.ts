/**
 * Every record the gateway writes carries its lifetime, so the store can enforce and clean up
 * expiry for every kind: after a complete flow (registration, sign-in, consent, token, refresh,
 * a rotation's successor record) the only records without an expiry are the ones meant to be
 * kept for good, the signing keys and a client someone consented to (with its registration
 * access token); and a sweep at a time past
 * every lifetime leaves nothing else. Checked on SQLite, whose rows the test can read directly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, describe, expect, it } from 'vitest';
import { startDemoServer } from '../../src/demo/index.ts';
import { createSqliteStore } from '../../src/store/sqlite-store.ts';
import { startTestGateway } from '../support/gateway.ts';
import { redeem, refresh, runCodeFlow } from '../support/oauth-flow.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-expiry-'));

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('record lifetimes', () => {
  it('gives every kind but the signing keys and a consented client an expiry, and the sweep removes them all', async () => {
    const path = join(dir, 'gatehouse.db');
    const demo = await startDemoServer({ port: 0 });
    const gateway = await startTestGateway({
      identity_providers: [{ id: 'dev', type: 'dev' }],
      access: { allow: { users: ['*'] } },
      services: { demo: { upstream: demo.url, scopes: ['tools.read'] } },
      store: { type: 'sqlite', path },
    });
    try {
      const flow = await runCodeFlow(gateway);
      const tokens = await redeem(gateway, flow);
      expect(tokens.status).toBe(200);
      // Two refreshes of one token (grace window) and one of a successor: a successor record.
      const first = await refresh(gateway, flow.client.client_id, String(tokens.body.refresh_token));
      await refresh(gateway, flow.client.client_id, String(tokens.body.refresh_token));
      expect((await refresh(gateway, flow.client.client_id, String(first.body.refresh_token))).status).toBe(200);
      // A client that never got a consent.
      await fetch(`${gateway.origin}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'none' }),
      });
    } finally {
      await gateway.close();
      await demo.close();
    }

    const db = new DatabaseSync(path, { readOnly: true });
    const rows = db.prepare('SELECT kind, count(*) AS n, sum(expires_at IS NULL) AS forever FROM records GROUP BY kind ORDER BY kind').all();
    db.close();
    const kinds = Object.fromEntries(rows.map((row) => [String(row.kind), { n: Number(row.n), forever: Number(row.forever) }]));
    // What a flow leaves behind, every kind of it.
    expect(Object.keys(kinds)).toEqual(expect.arrayContaining(['Client', 'Grant', 'RefreshToken', 'RegistrationAccessToken', 'Session', 'account', 'consent', 'refresh-successor', 'signing-keys']));
    for (const [kind, { forever }] of Object.entries(kinds)) {
      // One consented client (and its registration access token), one unused client.
      const keptForGood = kind === 'signing-keys' || kind === 'Client' || kind === 'RegistrationAccessToken' ? 1 : 0;
      expect({ kind, forever }).toEqual({ kind, forever: keptForGood });
    }

    // Long after every lifetime (a consent's year included), the sweep leaves only those two.
    const later = createSqliteStore({ path, sweepIntervalMs: 0, now: () => Date.now() + 2 * 365 * 86_400_000 });
    expect(await later.sweep()).toBeGreaterThan(0);
    await later.close();
    const after = new DatabaseSync(path, { readOnly: true });
    expect(after.prepare('SELECT kind FROM records ORDER BY kind').all().map((row) => row.kind)).toEqual(['Client', 'RegistrationAccessToken', 'signing-keys']);
    after.close();
  });
});
