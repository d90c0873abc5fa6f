import { z } from 'zod';
import { always, flag, isRecord, list, redirectUri, text, uniqueBy } from './primitives.ts';

/*
 * How MCP clients get a client_id (`clients`): dynamic registration, client ID metadata
 * documents, and clients registered in the file.
 */

// ---------------------------------------------------------------------------------------------
// Clients

const authMethods = ['none', 'client_secret_post', 'client_secret_basic'] as const;

function checkAuthMethod(client: unknown, ctx: z.core.$RefinementCtx<unknown>): void {
  if (!isRecord(client) || typeof client.token_endpoint_auth_method !== 'string') return;
  const hasSecret = client.client_secret !== undefined;
  const method = client.token_endpoint_auth_method;
  if (method === 'none' && hasSecret) {
    ctx.addIssue({ code: 'custom', path: ['token_endpoint_auth_method'], message: 'is "none" but client_secret is set: remove the secret, or use client_secret_post or client_secret_basic', input: method });
  } else if (method !== 'none' && !hasSecret) {
    ctx.addIssue({ code: 'custom', path: ['token_endpoint_auth_method'], message: `is "${method}", which needs a client_secret`, input: method });
  }
}

const staticClient = z.strictObject({
  client_id: text.refine((id) => !/^https?:\/\//i.test(id), {
    error: 'must not be a URL: URL client IDs are client ID metadata documents (clients.cimd)',
  }),
  client_secret: text.optional(),
  name: text,
  redirect_uris: z.array(redirectUri).min(1, { error: 'list at least one redirect URI' }),
  token_endpoint_auth_method: z.enum(authMethods).optional(),
}).superRefine(checkAuthMethod, always).transform((client) => ({
  ...client,
  token_endpoint_auth_method: client.token_endpoint_auth_method ?? (client.client_secret === undefined ? 'none' : 'client_secret_post'),
}));

export const clients = z.strictObject({
  registration: z.strictObject({ enabled: flag().default(true) }).prefault({}),
  cimd: z.strictObject({
    enabled: flag().default(true),
    allow_loopback: flag().default(false),
  }).prefault({}),
  static: list(staticClient).superRefine(uniqueBy('client_id', 'client_id'), always),
});
