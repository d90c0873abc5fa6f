import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { peekBody, registrationMetadata, tokenRequestClient } from './rate-limit-keys.ts';

/** An IncomingMessage fed by hand, as the HTTP parser would feed it. */
function incoming(headers: Record<string, string>): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.headers = headers;
  return req;
}

async function readAll(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req.iterator({ destroyOnReturn: false })) text += String(chunk);
  return text;
}

describe('peekBody', () => {
  it('reads a body that arrives in pieces and leaves all of it, then its end, for the next reader', async () => {
    const req = incoming({ 'content-length': '11' });
    const peeked = peekBody(req, 100, 1000);
    req.push(Buffer.from('hello '));
    setTimeout(() => {
      req.push(Buffer.from('world'));
      req.push(null);
    }, 10);
    expect((await peeked)?.toString()).toBe('hello world');
    expect(await readAll(req)).toBe('hello world');
  });

  it('leaves bodies without a length, or over the limit, alone', async () => {
    const chunked = incoming({});
    expect(await peekBody(chunked, 100, 1000)).toBeUndefined();
    const large = incoming({ 'content-length': '500' });
    expect(await peekBody(large, 100, 1000)).toBeUndefined();
    large.push(Buffer.alloc(500, 'a'));
    large.push(null);
    expect((await readAll(large)).length).toBe(500);
  });

  it('gives back what it read when the rest does not come in time', async () => {
    const req = incoming({ 'content-length': '10' });
    const peeked = peekBody(req, 100, 50);
    req.push(Buffer.from('abc'));
    expect(await peeked).toBeUndefined();
    req.push(Buffer.from('defghij'));
    req.push(null);
    expect(await readAll(req)).toBe('abcdefghij');
  });
});

describe('tokenRequestClient', () => {
  it('takes Basic credentials first (form-decoded), then client_id, then the assertion subject', () => {
    const basic = `Basic ${Buffer.from('my%20client:secret').toString('base64')}`;
    expect(tokenRequestClient(basic, Buffer.from('client_id=other'))).toBe('my client');
    expect(tokenRequestClient(undefined, Buffer.from('grant_type=refresh_token&client_id=abc'))).toBe('abc');
    const assertion = ['e30', Buffer.from(JSON.stringify({ sub: 'jwt-client' })).toString('base64url'), 'sig'].join('.');
    expect(tokenRequestClient(undefined, Buffer.from(`client_assertion=${assertion}`))).toBe('jwt-client');
    expect(tokenRequestClient(undefined, Buffer.from('client_assertion=not-a-jwt'))).toBeUndefined();
    expect(tokenRequestClient(undefined, undefined)).toBeUndefined();
  });
});

describe('registrationMetadata', () => {
  it('is the same for the same name and redirect URIs in any order, and differs otherwise', () => {
    const a = registrationMetadata(Buffer.from(JSON.stringify({ client_name: 'Claude', redirect_uris: ['https://b', 'https://a'], scope: 'x' })));
    const b = registrationMetadata(Buffer.from(JSON.stringify({ redirect_uris: ['https://a', 'https://b'], client_name: 'Claude' })));
    const c = registrationMetadata(Buffer.from(JSON.stringify({ client_name: 'Other', redirect_uris: ['https://a', 'https://b'] })));
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    expect(registrationMetadata(Buffer.from('{'))).toBe('not-json');
    expect(registrationMetadata(Buffer.from('[]'))).toBe('not-an-object');
  });
});
