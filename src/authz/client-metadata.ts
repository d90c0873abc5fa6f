/**
 * Client metadata as real MCP clients send it, made acceptable without weakening the rules.
 *
 * Runs inside oidc-provider's client schema (through `extraClientMetadata.validator`) for every
 * registration, update, metadata document and stored client, before oidc-provider's own
 * checks, so it must be idempotent.
 */
import { errors } from 'oidc-provider';
import { checkRedirectUri } from './redirect-uri.ts';

/** The metadata property whose validator hook carries this normalisation (RFC 7591 §2). */
export const NORMALISATION_HOOK_PROPERTY = 'software_id';

export function normalizeClientMetadata(metadata: Record<string, unknown>): void {
  // A member sent as JSON null means "not given" (RFC 7591 §2 defines no null values); taken
  // literally it would fail the type checks that follow and refuse the whole registration.
  for (const [key, value] of Object.entries(metadata)) {
    if (value === null) delete metadata[key];
  }

  const uris = Array.isArray(metadata.redirect_uris) ? metadata.redirect_uris : [];
  let local = false;
  for (const uri of uris) {
    const check = checkRedirectUri(uri);
    if (!check.ok) {
      throw new errors.InvalidRedirectUri(`redirect_uris: ${String(uri).slice(0, 200)} ${check.reason}`);
    }
    if (check.kind !== 'https') local = true;
  }

  // Loopback and private-use redirect URIs belong to native applications (RFC 8252). Many
  // clients omit application_type, or say "web" (OIDC's default), which would make
  // oidc-provider refuse `cursor://…` URIs.
  if (local) metadata.application_type = 'native';

  // Refresh tokens are issued without `offline_access` (checklist §7): a client that may use
  // the code grant may also refresh what it got.
  const grantTypes = Array.isArray(metadata.grant_types) ? (metadata.grant_types as unknown[]) : ['authorization_code'];
  if (grantTypes.includes('authorization_code') && !grantTypes.includes('refresh_token')) {
    metadata.grant_types = [...grantTypes, 'refresh_token'];
  }

  // A registered `scope` ("claudeai", "openid email profile") would restrict or break the
  // client; requested scopes are intersected with the service's at /authorize instead.
  delete metadata.scope;
}
