/**
 * Types for the one oidc-provider internal the gateway calls (provider-keys.ts): the function
 * the Provider constructor uses to build its key store from `configuration.jwks`.
 */
declare module 'oidc-provider/lib/helpers/initialize_keystore.js' {
  import type Provider from 'oidc-provider';
  export default function initializeKeystore(this: Provider, jwks: { keys: object[] }): void;
}
