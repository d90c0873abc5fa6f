/**
 * What a rate-limited request is counted by, besides its address: the client it names, or for
 * a registration the metadata it registers. Nothing here is authenticated (the authorization
 * server does that afterwards): a key only says which counter a request adds to.
 *
 * The token and registration requests carry these in their bodies, which oidc-provider reads
 * itself from the raw request: `peekBody` reads the body and gives it back to the stream
 * (`readable.unshift`), so the authorization server reads exactly the bytes the client sent.
 */
import type { IncomingMessage } from 'node:http';

/** oidc-provider refuses bodies over 56 KiB on these endpoints; larger ones are not peeked at. */
export const PEEK_LIMIT = 56 * 1024;

/**
 * The whole body of a request with a Content-Length of at most `limit` bytes, left in the
 * stream for the next reader; undefined (and the stream untouched but for what was read, which
 * is given back) when there is no such length, the body is larger, or it does not arrive within
 * `timeoutMs`.
 */
export function peekBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Buffer | undefined> {
  const length = Number(req.headers['content-length']);
  if (!Number.isInteger(length) || length <= 0 || length > limit || req.readableEnded) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const finish = (whole: boolean) => {
      clearTimeout(timer);
      req.off('readable', onReadable);
      req.off('end', onStop);
      req.off('error', onStop);
      const body = Buffer.concat(chunks, received);
      // Synchronously after the last read: the stream has not emitted 'end' yet, so the bytes
      // can still be put back in front, and the next reader sees the body and then its end.
      if (received > 0) req.unshift(body);
      resolve(whole ? body : undefined);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = req.read() as Buffer | null) !== null) {
        chunks.push(chunk);
        received += chunk.length;
        if (received >= length) {
          finish(true);
          return;
        }
      }
    };
    const onStop = () => finish(false);
    const timer = setTimeout(onStop, timeoutMs);
    req.on('readable', onReadable);
    req.once('end', onStop);
    req.once('error', onStop);
  });
}

/**
 * The client a token request names: HTTP Basic credentials (RFC 6749 §2.3.1, form-encoded
 * before base64), else `client_id` in the form body, else the subject of a JWT client
 * assertion (RFC 7523 §3: `sub` is the client_id).
 */
export function tokenRequestClient(authorization: string | undefined, body: Buffer | undefined): string | undefined {
  if (authorization?.slice(0, 6).toLowerCase() === 'basic ') {
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) return formDecode(decoded.slice(0, colon));
  }
  if (!body) return undefined;
  const form = new URLSearchParams(body.toString('utf8'));
  const clientId = form.get('client_id');
  if (clientId) return clientId;
  const assertion = form.get('client_assertion');
  const payload = assertion?.split('.')[1];
  if (!payload) return undefined;
  try {
    const sub = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub?: unknown }).sub;
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined;
  }
}

function formDecode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

/**
 * What identifies "the same client" among dynamic registrations, before any client_id exists:
 * its name and redirect URIs (RFC 7591 §2). Every registration of one hosted client looks alike
 * here, whoever registers it; a body that is not a JSON object is counted as one kind.
 */
export function registrationMetadata(body: Buffer | undefined): string {
  if (!body) return 'unread';
  try {
    const metadata = JSON.parse(body.toString('utf8')) as { client_name?: unknown; redirect_uris?: unknown };
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) return 'not-an-object';
    const uris = Array.isArray(metadata.redirect_uris) ? metadata.redirect_uris.map(String).sort() : [];
    return JSON.stringify([typeof metadata.client_name === 'string' ? metadata.client_name : '', uris]);
  } catch {
    return 'not-json';
  }
}
