/**
 * The sign-in and consent pages clicked in a real browser (Debian Chromium), started by the
 * real MCP SDK client's OAuth flow; the browser lands on the client's loopback redirect URI
 * with the code, as it does for Claude Code or VS Code. Screenshots of both pages are kept in
 * test-artifacts/.
 */
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startDemoServer } from '../../src/demo/index.ts';
import { browserAvailable, launchBrowser } from '../support/browser.ts';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { MemoryOAuthProvider } from '../support/mcp-oauth-client.ts';

const ARTIFACTS = 'test-artifacts';
const hasBrowser = browserAvailable();

describe.runIf(hasBrowser)('sign-in and consent in Chromium', () => {
  let browser: Browser;
  let gateway: TestGateway;
  let demo: Awaited<ReturnType<typeof startDemoServer>>;
  let callbackServer: Server;
  let callbackPort: number;
  let received: (url: URL) => void;
  const codeArrived = new Promise<URL>((resolve) => { received = resolve; });

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    demo = await startDemoServer({ port: 0 });
    gateway = await startTestGateway({
      identity_providers: [{ id: 'dev', type: 'dev' }],
      access: { allow: { users: ['*'] } },
      services: { demo: { upstream: demo.url, name: 'Demo MCP server', scopes: ['tools.read', 'tools.call'] } },
    });
    callbackPort = await freePort();
    callbackServer = createServer((req, res) => {
      received(new URL(req.url ?? '/', `http://127.0.0.1:${callbackPort}`));
      res.writeHead(200, { 'content-type': 'text/plain' }).end('You can close this window.');
    });
    await new Promise<void>((resolve) => callbackServer.listen(callbackPort, '127.0.0.1', resolve));
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
    await demo?.close();
    callbackServer?.close();
  });

  it('signs in on the dev page, approves consent, and the SDK client then calls a tool', async () => {
    // The client registers "http://127.0.0.1/callback" without a port and uses its own port
    // at authorization time, as VS Code and Claude Code do (RFC 8252 §7.3).
    const oauth = new MemoryOAuthProvider(`http://127.0.0.1:${callbackPort}/callback`, {
      redirect_uris: ['http://127.0.0.1/callback'],
      client_name: 'Browser Test Client',
    });
    const transport = new StreamableHTTPClientTransport(new URL(`${gateway.origin}/demo/mcp`), { authProvider: oauth });
    await expect(new Client({ name: 'browser-e2e', version: '1' }).connect(transport)).rejects.toThrow();
    expect(oauth.authorizationUrl).toBeDefined();

    const page = await browser.newPage();
    await page.goto(oauth.authorizationUrl!.href);
    expect(await page.locator('h1').textContent()).toMatch(/Sign in/);
    await page.screenshot({ path: `${ARTIFACTS}/dev-sign-in.png`, fullPage: true });
    await page.getByLabel('Email').fill('carol@example.com');
    await page.getByLabel(/^Name/).fill('Carol Danvers');
    await page.getByLabel(/^Groups/).fill('eng, admins');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();

    await page.waitForURL(/\/interaction\//);
    expect(await page.getByText('Browser Test Client').first().isVisible()).toBe(true);
    expect(await page.locator('main').textContent()).toContain('127.0.0.1');
    await page.screenshot({ path: `${ARTIFACTS}/consent.png`, fullPage: true });
    await page.getByRole('button', { name: /approve|allow/i }).click();

    const redirected = await codeArrived;
    expect(redirected.pathname).toBe('/callback');
    expect(redirected.searchParams.get('iss')).toBe(gateway.issuer);
    await transport.finishAuth(redirected.searchParams.get('code')!);

    const client = new Client({ name: 'browser-e2e', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.origin}/demo/mcp`), { authProvider: oauth }));
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    const who = JSON.parse((result.content as Array<{ text: string }>)[0]!.text);
    expect(who).toMatchObject({ email: 'carol@example.com', name: 'Carol Danvers', groups: ['eng', 'admins'], user_id: 'dev:carol@example.com' });
    await client.close();
    await page.close();
  });
});
