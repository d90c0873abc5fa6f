/**
 * A configuration reload's identity providers: prepared beside the ones in force, put in force
 * only when every new or changed one has loaded its discovery document.
 *
 * An unchanged provider (same configuration entry) is kept as it is, without a new discovery.
 * A new or changed one is built and must finish discovery within a bound; when one fails the
 * reload is refused with the entry's key path, and the providers in force stay (at start-up a
 * failed discovery is retried in the background instead: the gateway must come up, whereas a
 * reload has an operator watching who can fix the file). A sign-in begun with a provider that
 * a reload removed ends on the "no longer configured" page (sign-in.ts).
 */
import { isDeepStrictEqual } from 'node:util';
import { ConfigError, type Config, type ConfigProblem } from '../config/index.ts';
import { usesGitHubMembership } from '../policy/index.ts';
import { describeDiscoveryError } from './oidc.ts';
import type { IdentityProvider } from './provider.ts';
import { createIdentityProviders, type ProviderContext } from './registry.ts';

type ProviderConfig = Pick<Config, 'identity_providers' | 'listen' | 'access' | 'services'>;

export interface ProviderUpdate {
  added: string[];
  changed: string[];
  removed: string[];
  /** Puts the new providers in force, in the configuration's order, and closes the replaced ones. */
  commit(): void;
  /** Closes the prepared providers; the ones in force stay. */
  discard(): void;
}

export interface ProviderUpdateOptions {
  /** Names the configuration in the error. */
  source: string;
  onDiscoveryError: ProviderContext['onDiscoveryError'];
  /** Whether the dev provider's sign-in pages exist (they are set up at start). */
  devPages: boolean;
  /** How long new providers may take to load their discovery documents. */
  waitMs?: number | undefined;
}

const DISCOVERY_WAIT_MS = 15_000;
const POLL_MS = 25;

/** Whether GitHub providers must read org and team membership: built into them, so a change rebuilds them. */
function readsMembership(config: ProviderConfig): boolean {
  return usesGitHubMembership([config.access, ...Object.values(config.services).map((service) => service.access)]);
}

/**
 * Waits until every provider is ready or has reported a failed discovery (into `failures`), for
 * at most `waitMs`; returns why each one that is not ready is not.
 */
async function awaitDiscovery(providers: IdentityProvider[], failures: ReadonlyMap<string, unknown>, waitMs: number): Promise<Map<string, string>> {
  const deadline = Date.now() + waitMs;
  const waiting = () => providers.some((idp) => !idp.readiness().ready && !failures.has(idp.id));
  while (waiting() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  const problems = new Map<string, string>();
  for (const idp of providers) {
    if (idp.readiness().ready) continue;
    const failure = failures.get(idp.id);
    problems.set(idp.id, failure === undefined ? 'discovery did not finish in time' : `discovery failed: ${describeDiscoveryError(failure)}`);
  }
  return problems;
}

/**
 * Prepares `next`'s providers against `current` (the map in force, built from `before`). Rejects
 * with ConfigError when a new or changed provider cannot be used; nothing is in force until `commit`.
 */
export async function prepareProviderUpdate(
  current: Map<string, IdentityProvider>,
  before: ProviderConfig,
  next: ProviderConfig,
  options: ProviderUpdateOptions,
): Promise<ProviderUpdate> {
  const membershipChanged = readsMembership(before) !== readsMembership(next);
  const previous = new Map(before.identity_providers.map((entry) => [entry.id, entry]));
  const rebuilt = next.identity_providers.filter((entry) => {
    const old = previous.get(entry.id);
    return !old || !current.has(entry.id) || !isDeepStrictEqual(old, entry) || (entry.type === 'github' && membershipChanged);
  });
  const problems: ConfigProblem[] = [];
  const indexOf = (id: string) => next.identity_providers.findIndex((entry) => entry.id === id);
  for (const entry of rebuilt) {
    if (entry.type === 'dev' && !options.devPages) {
      problems.push({ path: `identity_providers[${indexOf(entry.id)}]`, message: 'a dev provider can be added only by a restart: its sign-in pages are set up at start' });
    }
  }
  if (problems.length > 0) throw new ConfigError(options.source, problems);

  const failures = new Map<string, unknown>();
  const built = createIdentityProviders({ ...next, listen: before.listen, identity_providers: rebuilt }, (id, issuer, error, attempt) => {
    if (!failures.has(id)) failures.set(id, error);
    options.onDiscoveryError(id, issuer, error, attempt);
  });
  const discard = () => { for (const idp of built.values()) idp.close(); };
  for (const [id, reason] of await awaitDiscovery([...built.values()], failures, options.waitMs ?? DISCOVERY_WAIT_MS)) {
    problems.push({ path: `identity_providers[${indexOf(id)}]`, message: `${reason}; the provider in force (if any) stays` });
  }
  if (problems.length > 0) {
    discard();
    throw new ConfigError(options.source, problems);
  }

  const nextIds = new Set(next.identity_providers.map((entry) => entry.id));
  return {
    added: rebuilt.filter((entry) => !current.has(entry.id)).map((entry) => entry.id),
    changed: rebuilt.filter((entry) => current.has(entry.id)).map((entry) => entry.id),
    removed: [...current.keys()].filter((id) => !nextIds.has(id)),
    commit() {
      const replaced = [...current.values()].filter((idp) => !nextIds.has(idp.id) || built.has(idp.id));
      const kept = new Map(current);
      // Rebuilt in place: everything holding the map (sign-in, refresh, /ready) sees the new set.
      current.clear();
      for (const entry of next.identity_providers) {
        const idp = built.get(entry.id) ?? kept.get(entry.id);
        if (idp) current.set(entry.id, idp);
      }
      for (const idp of replaced) idp.close();
    },
    discard,
  };
}
