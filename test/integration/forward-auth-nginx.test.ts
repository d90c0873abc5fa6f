/**
 * ForwardAuth with a real nginx in front: nginx runs the nginx example of docs/operations.md
 * (ports and TLS changed), asks the gateway's /forward-auth/<service> with `auth_request`,
 * copies the identity headers with `auth_request_set`, and proxies to a small echo MCP server
 * that reports what it received.
 *
 * nginx is Debian's package (/usr/sbin/nginx; .ci/run installs it). Without it this file is
 * skipped loudly on a developer machine and fails under CI=true.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow, type DevUser } from '../support/oauth-flow.ts';

const NGINX = '/usr/sbin/nginx';
const haveNginx = existsSync(NGINX);
if (!haveNginx) {
  if (process.env.CI === 'true') throw new Error(`${NGINX} is missing: .ci/run installs the Debian package nginx`);
  console.warn(`\n*** SKIPPED test/integration/forward-auth-nginx.test.ts: ${NGINX} is missing (apt-get install nginx) ***\n`);
}

/** The nginx example of docs/operations.md, the one the docs tell operators to use. */
function documentedNginxConfig(): string {
  const docs = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  const start = docs.indexOf('\n#### nginx\n');
  const block = /```nginx\n([\s\S]*?)\n```/.exec(docs.slice(start));
  if (start === -1 || !block?.[1]) throw new Error('docs/operations.md has no nginx example under "#### nginx"');
  return block[1];
}

/**
 * The documented server block for this test: loopback ports instead of TLS on 443, and the
 * `calculator` location and upstream repeated for `eng`.
 */
function testConfig(dir: string, ports: { nginx: number; gateway: number; echo: number }): string {
  let server = documentedNginxConfig();
  const location = /\n {4}location \/calculator\/mcp \{[\s\S]*?\n {4}\}\n/.exec(server)?.[0];
  const upstream = /\nupstream calculator .*\n/.exec(`\n${server}`)?.[0];
  if (!location || !upstream) throw new Error('the documented nginx example has no calculator upstream or location');
  server = `${upstream.trim().replaceAll('calculator', 'eng')}\n${server}`
    .replace(location, `${location}${location.replaceAll('calculator', 'eng')}`)
    .replace('listen 443 ssl;', `listen 127.0.0.1:${ports.nginx};`)
    .replace(/^ *ssl_certificate.*\n/gm, '')
    .replaceAll('server 127.0.0.1:8080;', `server 127.0.0.1:${ports.gateway};`)
    .replaceAll('server 127.0.0.1:3001;', `server 127.0.0.1:${ports.echo};`);
  // Its own prefix, pid, logs and temp paths: never the system configuration.
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 128; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${server}
}
`;
}

async function waitForPort(port: number, child: ChildProcess, errorLog: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : ''}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => { socket.end(); resolve(true); });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port} within 5 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

let gateway: TestGateway;
let echo: Server;
let nginx: ChildProcess | undefined;
let dir: string;
let origin: string;
let echoUrl: string;
const received: Array<{ path: string; headers: IncomingHttpHeaders; body: string }> = [];

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0', id: 7, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'forward-auth-nginx', version: '0' } },
});

async function tokenFor(service: string, user?: DevUser): Promise<{ token: string; clientId: string }> {
  const flow = await runCodeFlow(gateway, { ...(user ? { user } : {}), params: { resource: `${origin}/${service}/mcp` } });
  const response = await redeem(gateway, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  return { token: String(response.body.access_token), clientId: flow.client.client_id };
}

function postThroughNginx(path: string, token?: string, headers: Record<string, string> = {}) {
  return fetch(`${origin}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: INITIALIZE,
  });
}

describe.skipIf(!haveNginx)('ForwardAuth behind a real nginx (auth_request)', () => {
  beforeAll(async () => {
    // The echo MCP server: answers every JSON-RPC request with a result and keeps what it saw.
    echo = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        received.push({ path: request.url ?? '', headers: request.headers, body });
        const id = (JSON.parse(body || '{}') as { id?: unknown }).id ?? null;
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id, result: { echoed: true } }));
      });
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const echoPort = (echo.address() as { port: number }).port;
    echoUrl = `http://127.0.0.1:${echoPort}/mcp`;

    const nginxPort = await freePort();
    origin = `http://127.0.0.1:${nginxPort}`;
    // The gateway's public URL is nginx's: tokens are issued for the URLs clients use there.
    gateway = await startTestGateway({
      public_url: origin,
      identity_providers: [{ id: 'dev', type: 'dev' }],
      access: { allow: { domains: ['example.com'] } },
      forward_auth: { enabled: true },
      services: {
        calculator: { upstream: echoUrl, scopes: ['tools.read'], forward: { identity_jwt: true } },
        eng: { upstream: echoUrl, access: { allow: { groups: ['eng'] } } },
        other: { upstream: echoUrl },
      },
    });
    const gatewayPort = Number(new URL(gateway.listenUrl).port);

    dir = mkdtempSync(join(tmpdir(), 'gatehouse-nginx-'));
    const config = join(dir, 'nginx.conf');
    writeFileSync(config, testConfig(dir, { nginx: nginxPort, gateway: gatewayPort, echo: echoPort }));
    nginx = spawn(NGINX, ['-p', dir, '-c', config, '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
    nginx.stderr?.resume();
    await waitForPort(nginxPort, nginx, join(dir, 'error.log'));
  });

  afterAll(async () => {
    if (nginx && nginx.exitCode === null && nginx.signalCode === null) {
      const exited = new Promise((resolve) => nginx?.once('exit', resolve));
      nginx.kill('SIGTERM');
      const timer = setTimeout(() => nginx?.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    await gateway?.close();
    echo?.closeAllConnections();
    await new Promise((resolve) => (echo ? echo.close(resolve) : resolve(undefined)));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers a request without a token with 401, the gateway challenge and a JSON body, and forwards nothing', async () => {
    const before = received.length;
    const response = await postThroughNginx('/calculator/mcp');
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer scope="tools.read", resource_metadata="${origin}/.well-known/oauth-protected-resource/calculator/mcp"`,
    );
    expect(await response.json()).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'authorization required' } });
    expect(received.length).toBe(before);
  });

  it('serves the challenge metadata through nginx, naming the URL behind nginx as the resource', async () => {
    const response = await fetch(`${origin}/.well-known/oauth-protected-resource/calculator/mcp`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ resource: `${origin}/calculator/mcp`, authorization_servers: [`${origin}/`] });
  });

  it('forwards a request with a valid token with the identity headers, the identity JWT and no Authorization', async () => {
    const { token, clientId } = await tokenFor('calculator', { email: 'alice@example.com', name: 'Alice' });
    const response = await postThroughNginx('/calculator/mcp', token, {
      // A client's own identity headers: replaced, or removed where the gateway sends none.
      'x-user-id': 'admin', 'x-user-groups': 'admins', 'x-gatehouse-identity': 'forged',
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ jsonrpc: '2.0', id: 7, result: { echoed: true } });

    const seen = received.at(-1);
    expect(seen?.path).toBe('/mcp');
    expect(seen?.body).toBe(INITIALIZE);
    const headers = seen?.headers ?? {};
    expect(headers.authorization).toBeUndefined();
    expect(headers['x-user-id']).toBe(decodeJwt(token).sub);
    expect(headers['x-user-id']).toMatch(/^dev:/);
    expect(headers['x-user-email']).toBe('alice@example.com');
    expect(headers['x-user-name']).toBe('Alice');
    expect(headers['x-user-provider']).toBe('dev');
    expect(headers['x-client-id']).toBe(clientId);
    expect(headers['x-user-groups']).toBeUndefined();

    const assertion = String(headers['x-gatehouse-identity']);
    const keys = createRemoteJWKSet(new URL('/jwks', gateway.listenUrl));
    const { payload } = await jwtVerify(assertion, keys, { issuer: `${origin}/`, audience: echoUrl });
    expect(payload.sub).toBe(headers['x-user-id']);
  });

  it('refuses a token issued for another service with 401 invalid_token', async () => {
    const { token } = await tokenFor('other');
    const before = received.length;
    const response = await postThroughNginx('/calculator/mcp', token);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer error="invalid_token", error_description="the access token was issued for another resource", scope="tools.read", resource_metadata="${origin}/.well-known/oauth-protected-resource/calculator/mcp"`,
    );
    expect(received.length).toBe(before);
  });

  it("answers 403 to a user the service's access rules deny, and lets a member through", async () => {
    const outsider = await tokenFor('eng', { email: 'sam@example.com', groups: 'sales' });
    const before = received.length;
    const refused = await postThroughNginx('/eng/mcp', outsider.token);
    expect(refused.status).toBe(403);
    expect(received.length).toBe(before);
    expect(gateway.logs.some((line) => line.event === 'access.denied' && line.service === 'eng')).toBe(true);

    const member = await tokenFor('eng', { email: 'erin@example.com', groups: 'eng' });
    const allowed = await postThroughNginx('/eng/mcp', member.token);
    expect(allowed.status).toBe(200);
    expect(received.at(-1)?.headers['x-user-groups']).toBe('eng');
  });

  it('keeps /forward-auth away from the outside, while nginx itself may call it', async () => {
    const { token } = await tokenFor('calculator');
    const outside = await fetch(`${origin}/forward-auth/calculator`, { headers: { authorization: `Bearer ${token}` } });
    expect(outside.status).toBe(404);
    expect(outside.headers.get('x-user-id')).toBeNull();

    const direct = await fetch(`${gateway.listenUrl}/forward-auth/calculator`, { headers: { authorization: `Bearer ${token}` } });
    expect(direct.status).toBe(200);
    expect(direct.headers.get('x-user-id')).toBe(decodeJwt(token).sub);
    expect(await direct.text()).toBe('');
  });
});
