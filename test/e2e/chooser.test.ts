/**
 * The provider chooser in a real browser (Debian Chromium): with two identity providers
 * configured, the sign-in started by the MCP SDK client shows both under their configured
 * names; clicking one leads to that provider's login page, and signing in there comes back to
 * the gateway's consent page. A screenshot of the chooser is kept in test-artifacts/.
 */
import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startDemoServer } from '../../src/demo/index.ts';
import { browserAvailable, launchBrowser } from '../support/browser.ts';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { MemoryOAuthProvider } from '../support/mcp-oauth-client.ts';
import { startGoogleStandin, startKeycloakStandin, type Standin } from '../support/provider-standins.ts';

const ARTIFACTS = 'test-artifacts';
const hasBrowser = browserAvailable();
const KEY_ICON = `data:image/svg+xml,${encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 20 20"><circle cx="10" cy="10" r="9" fill="#c33"/></svg>')}`;

describe.runIf(hasBrowser)('identity provider chooser in Chromium', () => {
  let browser: Browser;
  let gateway: TestGateway;
  let demo: Awaited<ReturnType<typeof startDemoServer>>;
  let google: Standin;
  let keycloak: Standin;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const port = await freePort();
    [google, keycloak] = await Promise.all([
      startGoogleStandin({ id: 'google', name: 'Google', redirectUri: `http://127.0.0.1:${port}/callback/google`, users: {} }),
      startKeycloakStandin({
        id: 'acme', name: 'Acme SSO', redirectUri: `http://127.0.0.1:${port}/callback/acme`,
        users: { kim: { sub: 'kc-kim', email: 'kim@example.com', email_verified: true, name: 'Kim', groups: ['/eng'] } },
      }),
    ]);
    demo = await startDemoServer({ port: 0 });
    gateway = await startTestGateway({
      identity_providers: [google.entry, { ...keycloak.entry, icon: KEY_ICON }],
      access: { allow: { domains: ['example.com'] } },
      services: { demo: { upstream: demo.url, name: 'Demo MCP server' } },
    }, { port });
    for (let i = 0; i < 50 && (await fetch(`${gateway.origin}/ready`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
    await demo?.close();
    await google?.idp.close();
    await keycloak?.idp.close();
  });

  it('lists both providers by name; clicking one opens its login page, and signing in there returns to consent', async () => {
    const oauth = new MemoryOAuthProvider('http://127.0.0.1:54299/callback', { client_name: 'Chooser Test Client' });
    const transport = new StreamableHTTPClientTransport(new URL(`${gateway.origin}/demo/mcp`), { authProvider: oauth });
    await expect(new Client({ name: 'chooser-e2e', version: '1' }).connect(transport)).rejects.toThrow();

    const page = await browser.newPage();
    await page.goto(oauth.authorizationUrl!.href);
    expect(new URL(page.url()).origin).toBe(gateway.origin);
    const choices = page.getByRole('link');
    expect(await choices.allTextContents()).toEqual(['Continue with Google', 'Continue with Acme SSO']);
    expect(await page.locator('a[data-provider="acme"] img').getAttribute('src')).toBe(KEY_ICON);
    await page.screenshot({ path: `${ARTIFACTS}/chooser.png`, fullPage: true });

    await page.getByRole('link', { name: 'Continue with Acme SSO' }).click();
    await page.waitForURL((url) => url.origin === keycloak.idp.url && url.pathname.startsWith('/interaction/'));
    expect(await page.locator('h1').textContent()).toBe('Sign in');
    await page.locator('#login').fill('kim');
    await page.locator('#submit').click();

    await page.waitForURL((url) => url.origin === gateway.origin && url.pathname.startsWith('/interaction/'));
    expect(await page.getByText('Chooser Test Client').first().isVisible()).toBe(true);
    expect(gateway.logs.some((line) => line.event === 'sign_in' && line.account === 'acme:kc-kim')).toBe(true);
    await page.close();
  });
});
