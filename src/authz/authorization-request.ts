/**
 * The `scope` of an authorization request, as the gateway grants it.
 *
 * MCP clients send scopes that mean nothing here ("claudeai", "openid email profile",
 * `offline_access`, the AS metadata list verbatim). Refusing them with `invalid_scope` breaks
 * real clients (checklist §5, §15.11), so the request's scope becomes the intersection of what
 * was asked and what the service offers, or everything the service offers when that
 * intersection is empty (what clients get when they ask for nothing in particular: MCP
 * authorization, "Scope Selection Strategy"). The `resource` value is left as sent: it is
 * canonicalised where it is resolved (provider.ts), so the token request may repeat it verbatim.
 */
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { ServiceCatalog } from './service-catalog.ts';

export function grantableScopes(requested: string | undefined, offered: readonly string[]): string[] {
  const asked = new Set((requested ?? '').split(' ').filter(Boolean));
  const granted = offered.filter((scope) => asked.has(scope));
  return granted.length > 0 ? granted : [...offered];
}

export function rewriteAuthorizationScope(services: ServiceCatalog) {
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
    if (ctx.method === 'GET' && ctx.path === '/authorize') {
      const params = new URLSearchParams(ctx.querystring);
      const resources = params.getAll('resource');
      const service = resources.length === 1
        ? services.byResource(resources[0] ?? '')
        : resources.length === 0 ? services.defaultService() : undefined;
      if (service) {
        params.set('scope', grantableScopes(params.get('scope') ?? undefined, service.scopes).join(' '));
        ctx.querystring = params.toString();
      }
    }
    await next();
  };
}
