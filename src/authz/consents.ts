/**
 * Consent, remembered per user, client and service.
 *
 * Each approval is one oidc-provider Grant holding the scopes approved for one service, and a
 * consent record that points at it. A later authorization request by the same user and client
 * for the same service finds the grant (oidc-provider's `loadExistingGrant`) and skips the
 * consent page while the grant covers the requested scopes. Withdrawing a consent revokes its
 * grant and every token issued under it. A grant revoked for refresh-token reuse takes its
 * consent record with it (the record is indexed by grant id).
 */
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Store } from '../store/index.ts';
import type { ProtectedService, ServiceCatalog } from './service-catalog.ts';
import { keepClient, revokeGrant } from './adapter.ts';

const KIND = 'consent';
const CONSENT_TTL_SECONDS = 365 * 86400;

export interface ConsentRecord {
  id: string;
  accountId: string;
  clientId: string;
  clientName: string;
  serviceId: string;
  scopes: string[];
  grantId: string;
  grantedAt: number;
}

function consentId(accountId: string, clientId: string, serviceId: string): string {
  return [accountId, clientId, serviceId].map(encodeURIComponent).join('|');
}

/** The service an authorization request is for: its single `resource`, or the default. */
export function requestedService(services: ServiceCatalog, resource: unknown): ProtectedService | undefined {
  if (resource === undefined) return services.defaultService();
  return typeof resource === 'string' ? services.byResource(resource) : undefined;
}

/** oidc-provider `loadExistingGrant`: the remembered grant for this user, client and service. */
export async function loadConsentGrant(ctx: KoaContextWithOIDC, store: Store, services: ServiceCatalog) {
  const { oidc } = ctx;
  const resultGrantId = oidc.result?.consent?.grantId;
  if (typeof resultGrantId === 'string') return oidc.provider.Grant.find(resultGrantId);
  const accountId = oidc.session?.accountId;
  const clientId = oidc.client?.clientId;
  const service = requestedService(services, oidc.params?.resource);
  if (!accountId || !clientId || !service) return undefined;
  const record = await store.get(KIND, consentId(accountId, clientId, service.id));
  if (!record) return undefined;
  return oidc.provider.Grant.find(String(record.value.grantId));
}

/**
 * Records an approval: adds the scopes to the remembered grant (or a new one) and returns its
 * id for `interactionFinished`.
 */
export async function approveConsent(
  provider: Provider,
  store: Store,
  input: { accountId: string; clientId: string; clientName: string; service: ProtectedService; scopes: string[] },
): Promise<string> {
  const id = consentId(input.accountId, input.clientId, input.service.id);
  const existing = await store.get(KIND, id);
  let grant = existing ? await provider.Grant.find(String(existing.value.grantId)) : undefined;
  if (!grant || grant.accountId !== input.accountId || grant.clientId !== input.clientId) {
    grant = new provider.Grant({ accountId: input.accountId, clientId: input.clientId });
  }
  grant.addResourceScope(input.service.resourceUrl, input.scopes.join(' '));
  const grantId = await grant.save();
  const previous = (existing?.value.scopes as string[] | undefined) ?? [];
  const record: ConsentRecord = {
    id,
    accountId: input.accountId,
    clientId: input.clientId,
    clientName: input.clientName,
    serviceId: input.service.id,
    scopes: [...new Set([...previous, ...input.scopes])],
    grantId,
    grantedAt: Date.now(),
  };
  await store.put(KIND, id, { ...record }, { ttlSeconds: CONSENT_TTL_SECONDS, grantId });
  await keepClient(store, input.clientId);
  return grantId;
}

export async function listConsents(store: Store, accountId: string): Promise<ConsentRecord[]> {
  const records = await store.list(KIND, `${encodeURIComponent(accountId)}|`);
  return records.map((record) => record.value as unknown as ConsentRecord);
}

/** Withdraws one of the user's consents and revokes its grant; false when it is not theirs. */
export async function withdrawConsent(store: Store, accountId: string, id: string): Promise<ConsentRecord | undefined> {
  const record = await store.get(KIND, id);
  const consent = record?.value as unknown as ConsentRecord | undefined;
  if (!consent || consent.accountId !== accountId) return undefined;
  await store.delete(KIND, id);
  // Every replica's bearer check hears of it (adapter.ts revokeGrant).
  await revokeGrant(store, consent.grantId);
  return consent;
}
