/**
 * One current refresh token per line of rotations, whichever replica answers.
 *
 * oidc-provider rotates a refresh token on every use; the grace window (adapter.ts) lets the
 * previous token be used again for a short while, so a client's processes that refresh at the
 * same moment each get a token instead of revoking each other. Each such use issues another
 * successor of the same parent: siblings. The rule that gives one current token again:
 *
 * - every sibling is valid until one of them is used; the first one used becomes its parent's
 *   successor (`claimSuccession`, an atomic `Store.create`, so across replicas exactly one
 *   sibling wins even when several are used at once), and the others are retired: they read as
 *   unknown (invalid_grant, the grant untouched);
 * - once a successor has been used, its parent stops being usable even within its grace
 *   window (invalid_grant, grant untouched); after the window any reuse revokes the grant, as
 *   before (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).
 *
 * A token records its parent (the digest id of the token it replaced) in `PARENT_FIELD`; the
 * choice is a small record of kind `refresh-successor` keyed by the parent, indexed by grant
 * (so it goes with the grant) and living as long as the chosen token.
 */
import type { Store, StoredRecord } from '../store/index.ts';

export const PARENT_FIELD = 'gatehouseParent';
const KIND = 'refresh-successor';

export function parentOf(record: StoredRecord): string | undefined {
  const parent = record.value[PARENT_FIELD];
  return typeof parent === 'string' ? parent : undefined;
}

/** The id of the successor of `parent` that was used, if one was. */
export async function supersededBy(store: Store, parent: string): Promise<string | undefined> {
  const record = await store.get(KIND, parent);
  const id = record?.value.id;
  return typeof id === 'string' ? id : undefined;
}

/**
 * Makes `id` the successor of `parent` unless a sibling already is; resolves whether `id` is
 * (now or already) the one.
 */
export async function claimSuccession(store: Store, parent: string, id: string, record: StoredRecord): Promise<boolean> {
  const grantId = typeof record.value.grantId === 'string' ? record.value.grantId : undefined;
  const ttlSeconds = record.expiresAt === undefined ? undefined : Math.max(1, record.expiresAt - Math.floor(Date.now() / 1000));
  const options = { ...(ttlSeconds !== undefined ? { ttlSeconds } : {}), ...(grantId !== undefined ? { grantId } : {}) };
  if (await store.create(KIND, parent, { id }, options)) return true;
  return (await supersededBy(store, parent)) === id;
}
