import { describe, expect, it } from 'vitest';
import { bearerChallenge } from './challenge.ts';

const metadata = 'https://gw.example.com/.well-known/oauth-protected-resource/demo/mcp';

/** Parameters as a strict RFC 7235 parser reads them (auth-param = token "=" quoted-string). */
function parse(header: string): { scheme: string; params: Record<string, string> } {
  const [scheme = '', rest = ''] = header.split(/ (.*)/s);
  const params: Record<string, string> = {};
  const pattern = /\s*([A-Za-z_]+)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/gy;
  let consumed = 0;
  for (let match = pattern.exec(rest); match; match = pattern.exec(rest)) {
    params[match[1]!] = match[2]!.replace(/\\(.)/g, '$1');
    consumed = pattern.lastIndex;
  }
  if (consumed !== rest.length) throw new Error(`unparsed tail: ${rest.slice(consumed)}`);
  return { scheme, params };
}

describe('bearerChallenge (RFC 6750 §3, RFC 9728 §5.1)', () => {
  it('without credentials: Bearer, scope and an absolute resource_metadata, all quoted, and no error', () => {
    const header = bearerChallenge({ resourceMetadata: metadata, scope: ['tools.read', 'tools.call'] });
    expect(header).toBe(`Bearer scope="tools.read tools.call", resource_metadata="${metadata}"`);
    expect(header).not.toMatch(/error/);
    expect(parse(header)).toEqual({ scheme: 'Bearer', params: { scope: 'tools.read tools.call', resource_metadata: metadata } });
  });

  it('omits scope when the service has none', () => {
    expect(bearerChallenge({ resourceMetadata: metadata, scope: [] })).toBe(`Bearer resource_metadata="${metadata}"`);
    expect(bearerChallenge({ resourceMetadata: metadata })).toBe(`Bearer resource_metadata="${metadata}"`);
  });

  it('with a bad token: error and error_description first, quoted', () => {
    const header = bearerChallenge({ resourceMetadata: metadata, scope: ['tools.read'], error: 'invalid_token', description: 'the access token expired' });
    expect(header).toBe(`Bearer error="invalid_token", error_description="the access token expired", scope="tools.read", resource_metadata="${metadata}"`);
  });

  it('sends no error_description without an error', () => {
    expect(bearerChallenge({ resourceMetadata: metadata, description: 'stray' })).toBe(`Bearer resource_metadata="${metadata}"`);
  });

  it('keeps a description from smuggling in scope=, error= or resource_metadata=', () => {
    const header = bearerChallenge({
      resourceMetadata: metadata,
      scope: ['tools.read'],
      error: 'invalid_token',
      description: 'bad", scope="admin", error="none", resource_metadata="https://evil.example/prm',
    });
    // What naive regex parsers in clients do: the first match wins.
    expect(/scope="([^"]*)"/.exec(header)?.[1]).toBe('tools.read');
    expect(/error="([^"]*)"/.exec(header)?.[1]).toBe('invalid_token');
    expect(/resource_metadata="([^"]*)"/.exec(header)?.[1]).toBe(metadata);
    const { params } = parse(header);
    expect(params).toEqual({
      error: 'invalid_token',
      error_description: 'bad , scope admin , error none , resource_metadata https://evil.example/prm',
      scope: 'tools.read',
      resource_metadata: metadata,
    });
  });

  it('keeps descriptions within the RFC 6750 character set: no quotes, backslashes, CR/LF or non-ASCII', () => {
    const header = bearerChallenge({ resourceMetadata: metadata, error: 'invalid_token', description: 'line one\r\nSet-Cookie: x\\y "é"' });
    expect(header).not.toMatch(/[\r\n]/);
    expect(parse(header).params.error_description).toBe('line one Set-Cookie: x y');
    // The header must be something Node will send.
    expect(() => new Headers({ 'www-authenticate': header })).not.toThrow();
  });

  it('refuses a relative resource_metadata (a caller bug, never sent)', () => {
    expect(() => bearerChallenge({ resourceMetadata: '/.well-known/oauth-protected-resource/demo/mcp' })).toThrow(/absolute/);
  });
});
