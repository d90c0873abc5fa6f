import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildConfig, ConfigError } from '../config/index.ts';
import { upstreamTransport } from './upstream-transport.ts';

function configWith(service: Record<string, unknown>) {
  return buildConfig({
    public_url: 'https://mcp.example.com',
    secrets: { encryption_key: randomBytes(32).toString('base64') },
    identity_providers: [{ type: 'dev', id: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: { svc: service },
  }, { env: {}, source: 'test' });
}

function problems(service: Record<string, unknown>): string[] {
  try {
    configWith(service);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((problem) => `${problem.path}: ${problem.message}`);
    throw error;
  }
  return [];
}

describe('upstreamTransport', () => {
  it('reads WebSocket from the scheme, defaults http(s) to Streamable HTTP, and keeps a given transport', () => {
    expect(upstreamTransport({ upstream: 'ws://127.0.0.1:3001/mcp' })).toBe('websocket');
    expect(upstreamTransport({ upstream: 'WSS://mcp.example.com/mcp' })).toBe('websocket');
    expect(upstreamTransport({ upstream: 'http://127.0.0.1:3001/sse' })).toBe('streamable-http');
    expect(upstreamTransport({ upstream: 'http://127.0.0.1:3001/sse', transport: 'sse' })).toBe('sse');
  });
});

describe('services.<name>.transport in the configuration', () => {
  it('accepts ws and wss upstreams, and sse with an http upstream', () => {
    expect(configWith({ upstream: 'wss://mcp.example.com/ws' }).services.svc!.upstream).toBe('wss://mcp.example.com/ws');
    expect(configWith({ upstream: 'http://127.0.0.1:3001/sse', transport: 'sse' }).services.svc!.transport).toBe('sse');
  });

  it('refuses a transport that does not match the scheme, and unknown transports', () => {
    expect(problems({ upstream: 'http://127.0.0.1:3001/mcp', transport: 'websocket' })).toEqual([
      'services.svc.upstream: must be a ws:// or wss:// URL for transport: websocket',
    ]);
    expect(problems({ upstream: 'ws://127.0.0.1:3001/mcp', transport: 'sse' })).toEqual([
      'services.svc.transport: cannot be sse for a ws:// or wss:// upstream; leave it out or set websocket',
    ]);
    expect(problems({ upstream: 'http://127.0.0.1:3001/mcp', transport: 'stdio' })).toEqual([
      'services.svc.transport: must be streamable-http, sse or websocket',
    ]);
  });
});
