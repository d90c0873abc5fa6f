/**
 * `type: dev`: the embedded identity provider of dev mode and tests. A page on the gateway
 * itself lets you pick or type a made-up user. The configuration refuses it unless the
 * gateway listens on loopback only, and `createDevProvider` checks that again.
 */
import type { Identity } from './identity.ts';
import { SignInError, type IdentityProvider } from './provider.ts';

export interface DevProviderOptions {
  id: string;
  name?: string | undefined;
  listenHost: string;
}

export const DEV_SIGN_IN_PATH = '/signin/dev';

function isLoopbackListen(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d+){3}$/.test(host);
}

export function createDevProvider(options: DevProviderOptions): IdentityProvider {
  if (!isLoopbackListen(options.listenHost)) {
    throw new Error(`the dev identity provider refuses to run while the gateway listens on ${options.listenHost}; listen on 127.0.0.1`);
  }
  return {
    id: options.id,
    type: 'dev',
    name: options.name ?? 'Dev sign-in',
    async begin({ state }) {
      return { url: `${DEV_SIGN_IN_PATH}/${encodeURIComponent(state)}`, secrets: {} };
    },
    async complete() {
      throw new SignInError('the dev provider completes through its own form', 'Use the sign-in form.');
    },
    readiness: () => ({ ready: true }),
    close() {},
  };
}

/** The identity a dev sign-in form describes; throws `SignInError` on unusable input. */
export function devIdentityFromForm(providerId: string, fields: Record<string, unknown>): Identity {
  const email = typeof fields.email === 'string' ? fields.email.trim().toLowerCase() : '';
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email) || email.length > 254) {
    throw new SignInError('dev sign-in without a valid email', 'Enter an email address such as alice@example.com.');
  }
  const name = typeof fields.name === 'string' && fields.name.trim() ? fields.name.trim().slice(0, 100) : undefined;
  const groups = typeof fields.groups === 'string'
    ? fields.groups.split(',').map((group) => group.trim()).filter(Boolean).slice(0, 50)
    : [];
  const identity: Identity = { provider: providerId, subject: email, email, emailVerified: true, groups };
  if (name) identity.name = name;
  return identity;
}
