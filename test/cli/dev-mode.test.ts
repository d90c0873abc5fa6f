/**
 * `gatehouse dev` (what `npm start` runs) as a developer meets it: no configuration file, state
 * under ./.gatehouse in the working directory, the MCP URL printed, the dev sign-in page, and
 * the dev provider refused anywhere but loopback.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/gateway.ts';
import { HttpSession, parseForms } from '../support/http-session.ts';
import { killAll, runCli, startCli, type CliProcess } from './cli-process.ts';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-dev-'));
});

afterEach(async () => {
  await killAll();
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function mode(path: string): string {
  return (statSync(path).mode & 0o777).toString(8);
}

async function startDev(cwd: string, port: number): Promise<{ dev: CliProcess; mcpUrl: string }> {
  const dev = startCli(['dev', '--port', String(port)], { cwd });
  const [, mcpUrl] = await dev.waitForOutput(/MCP server URL:\s+(\S+)/);
  return { dev, mcpUrl: mcpUrl! };
}

describe('gatehouse dev', () => {
  it('prints the MCP URL, keeps its state in ./.gatehouse (0700; key and database 0600), and challenges requests without a token', async () => {
    const cwd = join(dir, 'first');
    mkdirSync(cwd);
    const port = await freePort();
    const { dev, mcpUrl } = await startDev(cwd, port);
    expect(mcpUrl).toBe(`http://127.0.0.1:${port}/demo/mcp`);
    expect(dev.stdout()).toMatch(/Gatehouse dev mode is ready in \d+ ms\./);
    expect(dev.stdout()).toContain(`State: ${join(cwd, '.gatehouse')}`);

    const state = join(cwd, '.gatehouse');
    expect(mode(state)).toBe('700');
    expect(readdirSync(state)).toEqual(expect.arrayContaining(['gatehouse.db', 'dev-encryption-key']));
    expect(mode(join(state, 'dev-encryption-key'))).toBe('600');
    expect(mode(join(state, 'gatehouse.db'))).toBe('600');
    expect(Buffer.from(readFileSync(join(state, 'dev-encryption-key'), 'utf8').trim(), 'base64')).toHaveLength(32);

    const response = await fetch(mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer scope="tools.read tools.call", resource_metadata="http://127.0.0.1:${port}/.well-known/oauth-protected-resource/demo/mcp"`,
    );
    expect(dev.stderr()).toBe('');
  });

  it('renders the dev sign-in page for an authorization request', async () => {
    const cwd = join(dir, 'signin');
    mkdirSync(cwd);
    const port = await freePort();
    const { mcpUrl } = await startDev(cwd, port);
    const origin = new URL(mcpUrl).origin;
    const redirect = 'http://127.0.0.1:49153/callback';
    const registered = await fetch(`${origin}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'Dev test', redirect_uris: [redirect], token_endpoint_auth_method: 'none' }),
    });
    expect(registered.status).toBe(201);
    const { client_id: clientId } = await registered.json() as { client_id: string };
    const verifier = randomBytes(32).toString('base64url');
    const authorize = new URL('/authorize', origin);
    authorize.search = new URLSearchParams({
      response_type: 'code', client_id: clientId, redirect_uri: redirect, state: 's',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256', resource: mcpUrl,
    }).toString();

    const page = await new HttpSession().follow(authorize, {}, { stopWhen: (url) => url.href.startsWith(redirect) });
    expect(page.url.pathname).toMatch(/^\/signin\/dev\/[\w-]+$/);
    expect(page.response.status).toBe(200);
    expect(page.response.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.response.text();
    expect(html).toContain('Development sign-in — not for production.');
    const [form] = parseForms(html, page.url);
    expect(form?.method).toBe('POST');
    expect(form?.action.pathname).toBe(page.url.pathname);
    expect(form?.fieldNames).toEqual(expect.arrayContaining(['csrf', 'email', 'name', 'groups']));
  });

  it('reuses its key and database on the next start', async () => {
    const cwd = join(dir, 'again');
    mkdirSync(join(cwd, '.gatehouse'), { recursive: true, mode: 0o755 });
    const port = await freePort();
    const first = await startDev(cwd, port);
    // An existing, too-open directory is tightened.
    expect(mode(join(cwd, '.gatehouse'))).toBe('700');
    const keyText = readFileSync(join(cwd, '.gatehouse', 'dev-encryption-key'), 'utf8');
    const jwks = await (await fetch(`http://127.0.0.1:${port}/jwks`)).json();
    first.dev.child.kill('SIGTERM');
    expect(await first.dev.exited).toBe(0);

    await startDev(cwd, port);
    expect(readFileSync(join(cwd, '.gatehouse', 'dev-encryption-key'), 'utf8')).toBe(keyText);
    expect(await (await fetch(`http://127.0.0.1:${port}/jwks`)).json()).toEqual(jwks);
  });

  it('refuses --port values that are not a port, with the usage', async () => {
    for (const port of ['0', 'abc', '70000', '-1']) {
      const { code, stderr } = await runCli(['dev', `--port=${port}`], { cwd: dir });
      expect(code, port).toBe(2);
      expect(stderr).toContain(`--port must be a port number from 1 to 65535, not ${port}`);
    }
  });

  it('says which port is taken, without a stack trace', async () => {
    const cwd = join(dir, 'busy');
    mkdirSync(cwd);
    const port = await freePort();
    await startDev(join(dir, 'first'), port);
    const { code, stderr } = await runCli(['dev', '--port', String(port)], { cwd });
    expect(code).toBe(1);
    expect(stderr).toContain(`port ${port} is in use`);
    expect(stderr).not.toMatch(/^\s+at /m);
  });
});

describe('the dev identity provider outside loopback', () => {
  it('is refused by check-config, naming identity_providers[0].type', async () => {
    const path = join(dir, 'dev-public.yaml');
    writeFileSync(path, `public_url: https://mcp.example.com
listen: { host: 0.0.0.0, port: 8080 }
store: { type: memory }
secrets: { encryption_key: "${randomBytes(32).toString('base64')}" }
identity_providers: [{ id: dev, type: dev }]
access: { allow: { users: ["*"] } }
services: { demo: { upstream: "http://127.0.0.1:3001/mcp" } }
`);
    const { code, stdout, stderr } = await runCli(['check-config', '--config', path]);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^ {2}- identity_providers\[0\]\.type: the dev provider .*refuses to run on a non-loopback address \(listen\.host is 0\.0\.0\.0\)/m);
    expect(stderr).not.toMatch(/^\s+at /m);
  });
});
