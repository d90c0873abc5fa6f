/**
 * The ForwardAuth endpoint as proxies call it, without a proxy: who may call it, how it finds
 * the service, and what it answers. (forward-auth-nginx.test.ts runs it behind a real nginx.)
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';

const UPSTREAM = 'http://127.0.0.1:9/mcp';
const services = {
  calc: { upstream: UPSTREAM, scopes: ['tools.read'] },
  renamed: { upstream: UPSTREAM, forward: { identity_headers: { user_id: 'X-Remote-User' } } },
  anonymous: { upstream: UPSTREAM, forward: { identity_headers: false } },
  mail: { upstream: UPSTREAM, forward: { upstream_token: 'X-Upstream-Token' } },
};
const base = { identity_providers: [{ id: 'dev', type: 'dev' }], access: { allow: { domains: ['example.com'] } }, services };

let gateway: TestGateway;
let disabled: TestGateway;
let restricted: TestGateway;
const tokens: Record<string, string> = {};

async function tokenFor(service: string): Promise<string> {
  const flow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/${service}/mcp` } });
  const response = await redeem(gateway, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  return String(response.body.access_token);
}

function ask(target: TestGateway, path: string, headers: Record<string, string> = {}, init: RequestInit = {}) {
  return fetch(`${target.origin}${path}`, { ...init, headers });
}

beforeAll(async () => {
  gateway = await startTestGateway({ ...base, forward_auth: { enabled: true } });
  disabled = await startTestGateway(base);
  // Behind a load balancer whose address is trusted for X-Forwarded-For: still judged by the peer.
  restricted = await startTestGateway({ ...base, trust_proxy: true, forward_auth: { enabled: true, allowed_ips: ['10.0.0.0/8'] } });
  for (const service of Object.keys(services)) tokens[service] = await tokenFor(service);
});

afterAll(async () => {
  await gateway?.close();
  await disabled?.close();
  await restricted?.close();
});

describe('who may call it', () => {
  it('is not served unless forward_auth.enabled', async () => {
    const response = await ask(disabled, '/forward-auth/calc', { authorization: 'Bearer x' });
    expect(response.status).toBe(404);
  });

  it('refuses a peer outside allowed_ips, whatever X-Forwarded-For claims', async () => {
    const response = await ask(restricted, '/forward-auth/calc', { 'x-forwarded-for': '10.1.2.3', authorization: 'Bearer x' });
    expect(response.status).toBe(403);
    expect(await response.json()).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32003, message: 'this address may not use ForwardAuth' } });
    expect(restricted.logs.some((line) => line.event === 'forward_auth.refused' && line.peer === '127.0.0.1')).toBe(true);
  });
});

describe('answers', () => {
  it('401 with the service challenge, a JSON-RPC body and no-store without a token', async () => {
    const response = await ask(gateway, '/forward-auth/calc');
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(`Bearer scope="tools.read", resource_metadata="${gateway.origin}/.well-known/oauth-protected-resource/calc/mcp"`);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'authorization required' } });
  });

  it('401 invalid_token for a token of another service or a forged one', async () => {
    const other = await ask(gateway, '/forward-auth/calc', { authorization: `Bearer ${tokens.renamed}` });
    expect(other.status).toBe(401);
    expect(other.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token", error_description="the access token was issued for another resource", /);
    const forged = await ask(gateway, '/forward-auth/calc', { authorization: 'Bearer eyJhbGciOiJub25lIn0.e30.' });
    expect(forged.status).toBe(401);
    expect(forged.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('200 with no body and the identity headers under the service names', async () => {
    const sub = decodeJwt(tokens.calc!).sub;
    const calc = await ask(gateway, '/forward-auth/calc', { authorization: `Bearer ${tokens.calc}` });
    expect(calc.status).toBe(200);
    expect(await calc.text()).toBe('');
    expect(calc.headers.get('cache-control')).toBe('no-store');
    expect(calc.headers.get('x-user-id')).toBe(sub);
    expect(calc.headers.get('x-user-email')).toBe('alice@example.com');
    expect(calc.headers.get('x-user-provider')).toBe('dev');
    expect(calc.headers.get('x-client-id')).toBe(decodeJwt(tokens.calc!).client_id);

    const renamed = await ask(gateway, '/forward-auth/renamed', { authorization: `Bearer ${tokens.renamed}` });
    expect(renamed.status).toBe(200);
    expect(renamed.headers.get('x-remote-user')).toBe(sub);
    expect(renamed.headers.get('x-user-id')).toBeNull();

    const anonymous = await ask(gateway, '/forward-auth/anonymous', { authorization: `Bearer ${tokens.anonymous}` });
    expect(anonymous.status).toBe(200);
    expect([...anonymous.headers.keys()].filter((name) => name.startsWith('x-user') || name === 'x-client-id')).toEqual([]);
  });

  it('401 invalid_token for a service that needs an upstream token the user does not have', async () => {
    const response = await ask(gateway, '/forward-auth/mail', { authorization: `Bearer ${tokens.mail}` });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(response.headers.get('x-upstream-token')).toBeNull();
  });

  it("403 for a foreign browser Origin, as on the MCP endpoint; the gateway's own is fine", async () => {
    const foreign = await ask(gateway, '/forward-auth/calc', { authorization: `Bearer ${tokens.calc}`, origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    const own = await ask(gateway, '/forward-auth/calc', { authorization: `Bearer ${tokens.calc}`, origin: gateway.origin });
    expect(own.status).toBe(200);
  });

  it('takes any method, and ignores a body a proxy sends along', async () => {
    const post = await ask(gateway, '/forward-auth/calc', { authorization: `Bearer ${tokens.calc}`, 'content-type': 'application/json' }, { method: 'POST', body: '{"jsonrpc":"2.0"' });
    expect(post.status).toBe(200);
    const head = await ask(gateway, '/forward-auth/calc', { authorization: `Bearer ${tokens.calc}` }, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('x-user-email')).toBe('alice@example.com');
  });
});

describe('finding the service', () => {
  it('by the forwarded path: X-Forwarded-Uri (Traefik, Caddy) or X-Original-URI (nginx)', async () => {
    const traefik = await ask(gateway, '/forward-auth', { authorization: `Bearer ${tokens.calc}`, 'x-forwarded-uri': '/calc/mcp?session=1' });
    expect(traefik.status).toBe(200);
    const nginx = await ask(gateway, '/forward-auth', { authorization: `Bearer ${tokens.renamed}`, 'x-original-uri': '/renamed/mcp/' });
    expect(nginx.status).toBe(200);
    expect(nginx.headers.get('x-remote-user')).toBe(decodeJwt(tokens.renamed!).sub);
  });

  it('404 for an unknown service, path or none at all: the proxy fails closed', async () => {
    for (const [path, headers] of [
      ['/forward-auth/nope', {}],
      ['/forward-auth', { 'x-forwarded-uri': '/nope/mcp' }],
      ['/forward-auth', { 'x-forwarded-uri': 'calc/mcp' }],
      ['/forward-auth', {}],
    ] as const) {
      const response = await ask(gateway, path, { ...headers, authorization: `Bearer ${tokens.calc}` });
      expect(response.status, `${path} ${JSON.stringify(headers)}`).toBe(404);
      expect(response.headers.get('x-user-id')).toBeNull();
    }
  });
});
