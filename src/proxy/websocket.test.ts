/**
 * What bounds an open WebSocket after the upgrade: the token's expiry and the periodic re-check
 * (revocation, access withdrawn). The end-to-end behaviour with real tokens is in
 * test/integration/websocket.test.ts; here the verifier's answer is driven by the test, so the
 * timers can be short.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { Account, ProtectedService } from '../authz/index.ts';
import type { BearerResult } from '../resource/index.ts';
import type { AuthorizationContext } from './authorize-request.ts';
import { registerWebSocketService, type WebSocketServiceDefinition } from './websocket.ts';

let upstream: WebSocketServer;
let app: FastifyInstance;
let origin: string;
const upstreamCloses: Array<{ code: number; reason: string }> = [];
let verdict: () => BearerResult;

const account: Account = { accountId: 'dev:alice', provider: 'dev', subject: 'alice', emailVerified: true, groups: [], signedInAt: 0 };

function claims(expiresInSeconds: number): BearerResult {
  return { ok: true, claims: { sub: 'dev:alice', client_id: 'client-1', exp: Math.floor(Date.now() / 1000) + expiresInSeconds } };
}

function closed(socket: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
}

async function connect(): Promise<WebSocket> {
  const socket = new WebSocket(`${origin.replace('http:', 'ws:')}/svc/mcp`, { headers: { authorization: 'Bearer token-1' } });
  await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject); });
  return socket;
}

beforeAll(async () => {
  upstream = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  upstream.on('connection', (socket) => socket.on('close', (code, reason) => upstreamCloses.push({ code, reason: String(reason) })));
  await new Promise((resolve) => upstream.once('listening', resolve));
  app = Fastify();
  // The gateway's public URL matters only for challenges and origins, which these tests do not use.
  const gateway = 'http://gateway.test';
  const context: AuthorizationContext = {
    issuer: `${gateway}/`,
    verifier: { verify: async () => verdict() } as unknown as AuthorizationContext['verifier'],
    access: { allow: { users: ['*'] } },
    allowedOrigins: new Set(),
    allowLoopbackOrigins: false,
    signIdentity: async () => 'unused',
    loadAccount: async () => account,
  };
  const service: ProtectedService<WebSocketServiceDefinition & { path: string }> = {
    id: 'svc',
    displayName: 'svc',
    path: '/svc/mcp',
    resourceUrl: `${gateway}/svc/mcp`,
    scopes: ['mcp'],
    definition: {
      path: '/svc/mcp',
      upstream: `ws://127.0.0.1:${(upstream.address() as { port: number }).port}`,
      method_scopes: {},
      timeout_ms: 1000,
      max_body_bytes: 1024,
      forward: { identity_headers: null },
    },
  };
  registerWebSocketService(app, service, context, { recheckMs: 100 });
  await app.listen({ host: '127.0.0.1', port: 0 });
  origin = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

afterAll(async () => {
  await app?.close();
  await new Promise((resolve) => upstream?.close(resolve));
});

describe('an open WebSocket', () => {
  it('closes with 1008 when the token expires, and tells the server', async () => {
    verdict = () => claims(1);
    const socket = await connect();
    const started = Date.now();
    expect(await closed(socket)).toEqual({ code: 1008, reason: 'the access token expired' });
    expect(Date.now() - started).toBeLessThan(1500);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(upstreamCloses.at(-1)).toEqual({ code: 1001, reason: 'the access token expired' });
  });

  it('closes with 1008 when a re-check refuses the token (revoked), and stays open while it passes', async () => {
    verdict = () => claims(3600);
    const socket = await connect();
    const closing = closed(socket);
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(socket.readyState).toBe(WebSocket.OPEN);
    verdict = () => ({ ok: false, error: 'invalid_token', description: 'the access token was revoked' });
    expect(await closing).toEqual({ code: 1008, reason: 'the access token was revoked' });
  });
});
