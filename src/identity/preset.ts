/**
 * What the OpenID Connect presets (google, microsoft, okta, auth0, keycloak) share: each is the
 * generic `oidc` provider with its provider's defaults and quirks, and takes only the client
 * registered at that provider, how it is shown, and where the provider lives.
 */
import type { OidcProviderOptions } from './oidc.ts';

export interface PresetOptions {
  id: string;
  /** Default: the provider's own name (Google, Microsoft, …). */
  name?: string | undefined;
  icon?: string | undefined;
  clientId: string;
  clientSecret: string;
  /** Scopes asked for beyond the preset's own. */
  scopes?: readonly string[] | undefined;
}

/** The options every preset passes on unchanged, with its type and display name. */
export function presetBase(options: PresetOptions, type: string, displayName: string): Pick<OidcProviderOptions, 'id' | 'type' | 'name' | 'icon' | 'clientId' | 'clientSecret'> {
  return {
    id: options.id,
    type,
    name: options.name ?? displayName,
    icon: options.icon,
    clientId: options.clientId,
    clientSecret: options.clientSecret,
  };
}

/** The preset's own scopes, then the configured extra ones, each once. */
export function presetScopes(own: readonly string[], extra: readonly string[] | undefined): string[] {
  return [...new Set([...own, ...(extra ?? [])])];
}

/** A claim's value as a list of strings: an array's strings, or a string split on spaces and commas. */
export function claimList(value: unknown): string[] {
  if (Array.isArray(value)) return value.filter((item): item is string => typeof item === 'string' && item !== '');
  return typeof value === 'string' ? value.split(/[ ,]+/).filter(Boolean) : [];
}
