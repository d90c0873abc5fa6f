/**
 * Signing keys replaced in a running oidc-provider, after a rotation (signing-keys.ts).
 *
 * oidc-provider takes its keys once, from `configuration.jwks`, and has no public way to change
 * them. Restarting every replica for a rotation is what the issue rules out, so this calls the
 * very function its constructor uses (lib/helpers/initialize_keystore.js): it validates the set
 * and replaces both the key store that signs and the set /jwks publishes, atomically for the
 * requests that follow. The replica tests (test/replicas) fail if a version of oidc-provider
 * changes this.
 */
import type Provider from 'oidc-provider';
import initializeKeystore from 'oidc-provider/lib/helpers/initialize_keystore.js';
import type { JWK } from 'jose';

export function useSigningKeys(provider: Provider, privateJwks: { keys: JWK[] }): void {
  initializeKeystore.call(provider, privateJwks as { keys: object[] });
}
