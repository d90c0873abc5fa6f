/**
 * The interface every upstream identity provider implements.
 *
 * A sign-in is two calls around a browser redirect. The gateway keeps the sign-in transaction
 * (state, nonce, PKCE verifier) server-side, single-use and short-lived, keyed by `state`; the
 * provider never stores anything itself.
 */
import type { Identity } from './identity.ts';

/** The provider's own tokens for the signed-in person, kept (sealed) only when a service asks for them. */
export interface UpstreamTokens {
  accessToken: string;
  refreshToken?: string | undefined;
  /** Epoch seconds; absent when the provider does not say (GitHub OAuth apps: never expires). */
  expiresAt?: number | undefined;
  /** Space-separated scopes the provider granted, when it says. */
  scope?: string | undefined;
}

export interface SignInResult {
  identity: Identity;
  tokens?: UpstreamTokens | undefined;
}

export interface SignInStart {
  /** Where to send the browser. */
  url: string;
  /** Values `complete` needs back (PKCE verifier, nonce); kept server-side by the caller. */
  secrets: Record<string, string>;
}

export interface IdentityProvider {
  readonly id: string;
  readonly type: string;
  /** Display name for the chooser page. */
  readonly name: string;
  readonly icon?: string | undefined;

  /**
   * Starts a sign-in. `state` is the gateway's own random value; `callbackUrl` is the exact
   * redirect URI registered at the provider. Rejects when the provider is not ready
   * (discovery not loaded yet), with a message fit for the log.
   */
  begin(input: { state: string; callbackUrl: string; extraScopes?: readonly string[] | undefined }): Promise<SignInStart>;

  /**
   * Finishes a sign-in from the URL the provider redirected the browser to. Validates
   * everything the protocol requires (state, PKCE, ID token signature, issuer, audience, nonce,
   * expiry) and rejects with `SignInError` on any failure or on an error the provider returned.
   * `extraScopes` (services' upstream scopes) are added to the provider's own at sign-in.
   */
  complete(input: { currentUrl: URL; state: string; secrets: Record<string, string> }): Promise<SignInResult>;

  /**
   * Optional: exchanges an upstream refresh token for fresh tokens; rejects with `SignInError`
   * when the provider refuses (revoked, expired). Providers whose tokens never expire omit it.
   */
  refresh?(refreshToken: string): Promise<UpstreamTokens>;

  /**
   * Optional: re-reads what may have changed about a signed-in person (GitHub org and team
   * membership) with their stored upstream tokens, refreshing those first when they expire.
   * The gateway calls it when its own refresh token is used, so access rules see current
   * membership. Present only when the provider has something to re-read for the configured
   * rules; the gateway keeps the person's upstream tokens (sealed) only for such a provider.
   * Rejects with `SignInError` when the provider no longer accepts the tokens (the refresh must
   * then fail), with any other error when the provider could not be asked.
   */
  reload?(previous: Identity, tokens: UpstreamTokens): Promise<SignInResult>;

  /** Whether the provider can start sign-ins now, and why not, for /ready. */
  readiness(): { ready: boolean; detail?: string };

  /** Stops background work (discovery retries). */
  close(): void;
}

/** A sign-in that failed at or after the provider; `userMessage` is safe to show. */
export class SignInError extends Error {
  readonly userMessage: string;
  constructor(message: string, userMessage: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SignInError';
    this.userMessage = userMessage;
  }
}
