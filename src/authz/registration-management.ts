/**
 * Client registration management (RFC 7591/7592) around oidc-provider, for secrets kept only
 * as digests and for responses MCP clients' parsers accept.
 */
import { IncomingMessage } from 'node:http';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { clientSecretMatches, isHashedClientSecret } from './client-secret.ts';

/** The client configuration endpoint (RFC 7592 §2): `routes.registration` + `/:clientId`. */
const CLIENT_CONFIGURATION_PATH = /^\/register\/([^/]+)$/;
/** oidc-provider's own limit for JSON bodies. */
const REGISTRATION_BODY_LIMIT = 56 * 1024;
/**
 * Stands in for a presented client secret that did not match. oidc-provider compares
 * NUL-padded strings, so it must not be empty or NUL: it then equals neither a digest nor the
 * empty secret of a public client.
 */
const NOT_THE_SECRET = 'not the client secret';

/**
 * RFC 7591/7592 with client secrets stored only as digests (client-secret.ts):
 * - An update (PUT, RFC 7592 §2.2) carries the client's current `client_secret`. oidc-provider
 *   compares it with the stored value as a plain string, which is the digest, so every such
 *   update would fail. Here, before oidc-provider reads the body, a secret that matches the
 *   digest is removed (oidc-provider then keeps the stored one, as it does when none is sent);
 *   any other value is replaced by one that matches nothing, so oidc-provider refuses the update
 *   with its usual `invalid_request`, after checking the registration access token.
 * - Reads and updates answer with the stored metadata, digest included: it is left out. The
 *   client received its secret once, in the registration response (RFC 7592 §2.1 lets the
 *   server omit it).
 * - Registration responses never carry JSON `null` (MCP clients' zod and pydantic parsers
 *   refuse it; checklist §4b).
 */
export function registrationManagement(provider: Provider) {
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
    const managed = CLIENT_CONFIGURATION_PATH.exec(ctx.path);
    if (managed?.[1] && ctx.method === 'PUT' && ctx.is('application/json')) {
      const clientId = safeDecode(managed[1]);
      const body = await readRequestBody(ctx.req, REGISTRATION_BODY_LIMIT);
      if (!body) {
        ctx.status = 413;
        ctx.body = { error: 'invalid_request', error_description: 'the request body is too large' };
        return;
      }
      replayRequestBody(ctx, await withPresentedSecretChecked(provider, clientId, body));
    }
    await next();
    const route = ctx.oidc?.route;
    if ((route === 'registration' || route === 'client' || route === 'client_update') && isRecord(ctx.body)) {
      const response = ctx.body;
      for (const [key, value] of Object.entries(response)) if (value === null) delete response[key];
      if (typeof response.client_secret === 'string' && isHashedClientSecret(response.client_secret)) delete response.client_secret;
    }
  };
}

async function withPresentedSecretChecked(provider: Provider, clientId: string | undefined, body: Buffer): Promise<Buffer> {
  let update: unknown;
  try {
    update = JSON.parse(body.toString('utf8'));
  } catch {
    return body; // oidc-provider answers invalid_request
  }
  if (!isRecord(update) || !('client_secret' in update)) return body;
  const stored = clientId ? await (provider.Client as unknown as ClientModelStatics).adapter.find(clientId) : undefined;
  const digest = typeof stored?.client_secret === 'string' && stored.client_secret ? stored.client_secret : undefined;
  const presented = update.client_secret;
  // A client without a secret may echo an empty one, as oidc-provider itself accepts.
  const matches = typeof presented === 'string' && (digest === undefined ? presented === '' : clientSecretMatches(digest, presented));
  if (matches) {
    delete update.client_secret;
  } else {
    update.client_secret = NOT_THE_SECRET;
  }
  return Buffer.from(JSON.stringify(update));
}

interface ClientModelStatics {
  adapter: { find(id: string): Promise<Record<string, unknown> | undefined> };
}

/** The whole body, or `undefined` when it is longer than `limit` bytes. */
async function readRequestBody(request: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request.iterator({ destroyOnReturn: false })) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    size += buffer.length;
    if (size > limit) return undefined;
    chunks.push(buffer);
  }
  return Buffer.concat(chunks, size);
}

/**
 * Gives oidc-provider a request whose body is `body`: a fresh `IncomingMessage` on the same
 * socket with the same method, URL and headers (Content-Length adjusted), so its body parser
 * reads it as it would the original.
 */
function replayRequestBody(ctx: KoaContextWithOIDC, body: Buffer): void {
  const original = ctx.req;
  const replay = new IncomingMessage(original.socket);
  replay.method = original.method ?? 'PUT';
  replay.url = original.url ?? ctx.path;
  replay.httpVersion = original.httpVersion;
  replay.httpVersionMajor = original.httpVersionMajor;
  replay.httpVersionMinor = original.httpVersionMinor;
  const headers = { ...original.headers, 'content-length': String(body.length) };
  delete headers['transfer-encoding'];
  replay.headers = headers;
  // Marks the message as fully received, as Node's parser does; an incomplete one destroys its
  // socket when it is itself destroyed after being read.
  replay.complete = true;
  replay.push(body);
  replay.push(null);
  ctx.req = replay;
  ctx.request.req = replay;
  ctx.response.req = replay;
}

function safeDecode(value: string): string | undefined {
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
