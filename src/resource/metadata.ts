/**
 * Protected-resource metadata (RFC 9728) for each service, and where it lives.
 */
import type { ProtectedService } from '../authz/index.ts';

export const PRM_PREFIX = '/.well-known/oauth-protected-resource';

export function protectedResourceMetadata(service: ProtectedService, issuer: string) {
  return {
    resource: service.resourceUrl,
    authorization_servers: [issuer],
    scopes_supported: service.scopes,
    bearer_methods_supported: ['header'],
    resource_name: service.displayName,
  };
}

/** The absolute metadata URL for a service: the well-known prefix inserted before its path. */
export function metadataUrl(service: ProtectedService, issuer: string): string {
  return new URL(`${PRM_PREFIX}${service.path}`, issuer).href;
}
