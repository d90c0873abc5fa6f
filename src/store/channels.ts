/**
 * The Store event channels the gateway uses (Store `subscribe`/`publish`), named in one place so
 * the publishing and the listening side cannot drift apart.
 */

/** A grant died (revoked, reused refresh token or code, consent withdrawn); message: its id. */
export const REVOCATIONS_CHANNEL = 'revocations';

/** The stored signing keys changed (a rotation); message: free text, re-read the store. */
export const SIGNING_KEYS_CHANNEL = 'signing-keys';
