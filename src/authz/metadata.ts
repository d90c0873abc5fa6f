/**
 * Authorization-server metadata (RFC 8414 / OIDC Discovery) as MCP clients need it.
 */
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { ServiceCatalog } from './service-catalog.ts';

/**
 * Authorization-server metadata as MCP clients need it: `scopes_supported` lists the services'
 * scopes (never `offline_access`, which makes SDKs add `prompt=consent`), and the
 * openid-configuration copy carries the same fields as the RFC 8414 one.
 */
export function adjustMetadata(services: ServiceCatalog) {
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
    await next();
    if (ctx.oidc?.route !== 'discovery' || !ctx.body || typeof ctx.body !== 'object') return;
    const body = ctx.body as Record<string, unknown>;
    body.scopes_supported = services.allScopes();
    body.response_modes_supported = ['query'];
    body.grant_types_supported = ['authorization_code', 'refresh_token'];
    delete body.claims_parameter_supported;
    delete body.request_parameter_supported;
    delete body.request_uri_parameter_supported;
    ctx.set('Cache-Control', 'public, max-age=300');
  };
}
