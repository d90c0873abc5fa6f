import { describe, expect, it } from 'vitest';
import { canonicalResource, serviceResourceUrl } from './resource-uri.ts';

describe('canonicalResource (RFC 8707; MCP authorization "Canonical Server URI")', () => {
  it.each([
    ['https://gw.example.com/demo/mcp', 'https://gw.example.com/demo/mcp'],
    // Case of scheme and host; the path keeps its case.
    ['HTTPS://GW.Example.COM/demo/mcp', 'https://gw.example.com/demo/mcp'],
    ['https://gw.example.com/Demo/MCP', 'https://gw.example.com/Demo/MCP'],
    // Default ports dropped, others kept.
    ['https://gw.example.com:443/demo/mcp', 'https://gw.example.com/demo/mcp'],
    ['http://127.0.0.1:80/demo/mcp', 'http://127.0.0.1/demo/mcp'],
    ['https://gw.example.com:8443/demo/mcp', 'https://gw.example.com:8443/demo/mcp'],
    ['http://127.0.0.1:8080/demo/mcp', 'http://127.0.0.1:8080/demo/mcp'],
    // Trailing slashes.
    ['https://gw.example.com/demo/mcp/', 'https://gw.example.com/demo/mcp'],
    ['https://gw.example.com/demo/mcp//', 'https://gw.example.com/demo/mcp'],
    ['https://gw.example.com/', 'https://gw.example.com'],
    ['https://gw.example.com', 'https://gw.example.com'],
    // All at once, as a client's URL library might send it back.
    ['HTTPS://GW.example.com:443/demo/mcp/', 'https://gw.example.com/demo/mcp'],
    // The query is part of the resource (RFC 8707 §2 discourages but allows it).
    ['https://gw.example.com/demo/mcp?tenant=a', 'https://gw.example.com/demo/mcp?tenant=a'],
    ['https://gw.example.com/demo/mcp/?tenant=a', 'https://gw.example.com/demo/mcp?tenant=a'],
    // Dot segments resolved as any URL parser would.
    ['https://gw.example.com/x/../demo/mcp', 'https://gw.example.com/demo/mcp'],
  ])('%s → %s', (input, expected) => {
    expect(canonicalResource(input)).toBe(expected);
  });

  it('keeps different queries different', () => {
    expect(canonicalResource('https://gw.example.com/mcp?tenant=a')).not.toBe(canonicalResource('https://gw.example.com/mcp?tenant=b'));
    expect(canonicalResource('https://gw.example.com/mcp?tenant=a')).not.toBe(canonicalResource('https://gw.example.com/mcp'));
  });

  it.each([
    ['a fragment (RFC 8707 §2: MUST NOT include one)', 'https://gw.example.com/demo/mcp#section'],
    ['an empty fragment', 'https://gw.example.com/demo/mcp#'],
    ['a relative reference', '/demo/mcp'],
    ['a non-http scheme', 'urn:example:demo'],
    ['a script scheme', 'javascript:alert(1)'],
    ['user information', 'https://user:pw@gw.example.com/demo/mcp'],
    ['garbage', 'not a url'],
    ['the empty string', ''],
  ])('refuses %s', (_what, input) => {
    expect(canonicalResource(input)).toBeUndefined();
  });
});

describe('serviceResourceUrl', () => {
  it('joins the issuer origin and the service path in canonical form', () => {
    expect(serviceResourceUrl('https://GW.example.com:443/', '/demo/mcp')).toBe('https://gw.example.com/demo/mcp');
    expect(serviceResourceUrl('http://127.0.0.1:8080/', '/tools/mcp')).toBe('http://127.0.0.1:8080/tools/mcp');
  });
});
