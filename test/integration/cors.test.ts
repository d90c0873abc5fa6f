/**
 * CORS for browser-based MCP clients: the origins in `cors.allowed_origins` may call the MCP
 * endpoints (and read WWW-Authenticate and Mcp-Session-Id); any other browser origin is refused,
 * its preflight included; the list is reloadable; discovery and the OAuth endpoints stay open.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer } from '../../src/demo/index.ts';
import { build, problemsWith } from '../support/config-fixtures.ts';
import { reloadedConfig, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';

const INSPECTOR = 'https://inspector.example.com';
const FOREIGN = 'https://evil.example';

let gateway: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;
let token: string;

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'cors-test', version: '0' } },
});

function post(origin: string, bearer?: string) {
  return fetch(`${gateway.origin}/demo/mcp`, {
    method: 'POST',
    headers: {
      origin,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
    },
    body: INITIALIZE,
  });
}

function preflight(origin: string, path = '/demo/mcp') {
  return fetch(`${gateway.origin}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, mcp-session-id' },
  });
}

/** The gateway's configuration with these changes, for a reload. */
function reloaded(changes: Record<string, unknown>) {
  return reloadedConfig(gateway, {
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: { demo: { upstream: demo.url } },
    forward_auth: { enabled: true },
    ...changes,
  });
}

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: { demo: { upstream: demo.url } },
    forward_auth: { enabled: true },
    cors: { allowed_origins: [`${INSPECTOR}/`] },
  });
  const flow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/demo/mcp` } });
  token = String((await redeem(gateway, flow)).body.access_token);
});

afterAll(async () => {
  await gateway?.close();
  await demo?.close();
});

describe('CORS on the MCP endpoints', () => {
  it('lets an allowed origin through: preflight, challenge with readable headers, and the call itself', async () => {
    const answer = await preflight(INSPECTOR);
    expect(answer.status).toBe(204);
    expect(answer.headers.get('access-control-allow-origin')).toBe(INSPECTOR);
    expect(answer.headers.get('access-control-allow-methods')).toContain('POST');

    const challenge = await post(INSPECTOR);
    expect(challenge.status).toBe(401);
    expect(challenge.headers.get('access-control-allow-origin')).toBe(INSPECTOR);
    expect(challenge.headers.get('access-control-expose-headers')).toMatch(/WWW-Authenticate.*Mcp-Session-Id/);

    const call = await post(INSPECTOR, token);
    expect(call.status).toBe(200);
    expect(call.headers.get('access-control-allow-origin')).toBe(INSPECTOR);
    expect(call.headers.get('mcp-session-id')).toBeTruthy();
  });

  it('refuses another origin with a JSON-RPC 403 and no CORS permission, its preflight included', async () => {
    const answer = await preflight(FOREIGN);
    expect(answer.status).toBe(403);
    expect(answer.headers.get('access-control-allow-origin')).toBeNull();
    expect(answer.headers.get('access-control-allow-methods')).toBeNull();

    const call = await post(FOREIGN, token);
    expect(call.status).toBe(403);
    expect(call.headers.get('access-control-allow-origin')).toBeNull();
    expect(await call.json()).toMatchObject({ jsonrpc: '2.0', error: { message: expect.stringContaining(FOREIGN) } });

    // ForwardAuth applies the same origin rule.
    const forwarded = await fetch(`${gateway.origin}/forward-auth/demo`, { headers: { origin: FOREIGN, authorization: `Bearer ${token}` } });
    expect(forwarded.status).toBe(403);
    expect((await fetch(`${gateway.origin}/forward-auth/demo`, { headers: { origin: INSPECTOR, authorization: `Bearer ${token}` } })).status).toBe(200);
  });

  it('keeps discovery and the token endpoint open to any origin', async () => {
    const metadata = await fetch(`${gateway.origin}/.well-known/oauth-protected-resource/demo/mcp`, { headers: { origin: FOREIGN } });
    expect(metadata.headers.get('access-control-allow-origin')).toBe('*');
    const tokenPreflight = await preflight(FOREIGN, '/token');
    expect(tokenPreflight.status).toBe(204);
    expect(tokenPreflight.headers.get('access-control-allow-origin')).toBe(FOREIGN);
  });

  it('takes a new list of origins on reload', async () => {
    const result = await gateway.reload(reloaded({ cors: { allowed_origins: [INSPECTOR, FOREIGN] } }));
    expect(result).toMatchObject({ cors: true, needsRestart: [] });
    expect((await post(FOREIGN, token)).status).toBe(200);
    await gateway.reload(reloaded({ cors: { allowed_origins: [] } }));
    expect((await post(INSPECTOR, token)).status).toBe(403);
  });
});

describe('cors.allowed_origins in the configuration', () => {
  const configWith = (origins: unknown) => build({ cors: { allowed_origins: origins } });
  const problems = (origins: unknown) => problemsWith({ cors: { allowed_origins: origins } });

  it('keeps origins in the form browsers send them', () => {
    expect(configWith(['HTTPS://Inspector.Example.com:443/', 'http://localhost:6274']).cors.allowed_origins)
      .toEqual(['https://inspector.example.com', 'http://localhost:6274']);
    expect(configWith(undefined).cors.allowed_origins).toEqual([]);
  });

  it('refuses "*", paths and other schemes, naming the key', () => {
    expect(problems(['*'])).toEqual([expect.stringMatching(/^cors\.allowed_origins\[0\]: cannot be "\*"/)]);
    expect(problems(['https://inspector.example.com/app'])).toEqual([expect.stringMatching(/^cors\.allowed_origins\[0\]: must be an origin only/)]);
    expect(problems(['https://ok.example', 'chrome-extension://abc'])).toEqual([expect.stringMatching(/^cors\.allowed_origins\[1\]: must be an http/)]);
  });
});
