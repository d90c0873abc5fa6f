/**
 * What the sign-in and consent pages share: the parts they work with, and how a page is sent.
 */
import type { AuditLog } from '../ops/audit.ts';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type Provider from 'oidc-provider';
import type { IdentityProvider } from '../identity/index.ts';
import type { AccessPolicy } from '../policy/index.ts';
import type { Store } from '../store/index.ts';
import { securityHeaders } from '../ops/security-headers.ts';
import type { ServiceCatalog } from './service-catalog.ts';
import { STYLE_HASH } from './views/index.ts';
import type { UpstreamTokenKeeper } from './upstream-tokens.ts';

type InteractionDetails = Awaited<ReturnType<Provider['interactionDetails']>>;

export interface InteractionContext {
  /** The audit trail (ops/audit.ts). */
  audit: Pick<AuditLog, 'record'>;
  provider: Provider;
  store: Store;
  services: ServiceCatalog;
  identityProviders: ReadonlyMap<string, IdentityProvider>;
  access: AccessPolicy;
  csrfSecret: Buffer;
  /** The issuer, with its trailing slash. */
  issuer: string;
  secure: boolean;
  showConsent(request: FastifyRequest, reply: FastifyReply, details: InteractionDetails): Promise<FastifyReply>;
  /**
   * The CSP `form-action` source of the client's redirect URI for an interaction: a form
   * post that resumes the authorization may end in a redirect there, and browsers apply
   * `form-action` to the whole redirect chain.
   */
  clientRedirectSource(interactionUid: string): Promise<string[]>;
  /** Upstream tokens kept for services that forward them; sign-in stores them. */
  upstreamTokens?: UpstreamTokenKeeper | undefined;
}

export function sendPage(reply: FastifyReply, context: Pick<InteractionContext, 'secure'>, status: number, body: string, formAction: string[] = []) {
  return reply
    .code(status)
    .headers(securityHeaders({ styleHash: STYLE_HASH, https: context.secure, formAction }))
    .type('text/html; charset=utf-8')
    .send(body);
}
