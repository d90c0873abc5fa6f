/**
 * Sign-in: the login prompt of an authorization request, handled by an upstream identity
 * provider, then the gateway's access policy.
 *
 *   GET  /interaction/:uid                   login prompt → chooser page, or straight to the only provider
 *   GET  /interaction/:uid/signin/:provider  start the gateway's own sign-in at that provider
 *   GET  /callback/:provider                 the provider's redirect back (state, code)
 *   GET  /signin/dev/:state, POST            the embedded dev identity provider's form
 *
 * The sign-in transaction (the interaction it belongs to, PKCE verifier, nonce) is kept in the
 * store under the gateway's random `state`, single-use (taken at the callback) and short-lived.
 *
 * When services forward upstream tokens, the sign-in asks the provider for the upstream scopes
 * of the services being authorized and keeps the provider's tokens, sealed (upstream-tokens.ts).
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { devIdentityFromForm, SignInError, type Identity, type UpstreamTokens } from '../identity/index.ts';
import { decideAccess } from '../policy/index.ts';
import { createCsrfToken, verifyCsrfToken } from '../ops/csrf.ts';
import { saveAccount } from './accounts.ts';
import { chooserPage, defaultDevPresets, deniedPage, devSignInPage, errorPage } from './views/index.ts';
import type { InteractionContext } from './interaction-context.ts';
import { scopeSet, type UpstreamTokenKeeper } from './upstream-tokens.ts';
import { sendPage } from './interaction-context.ts';

const KIND = 'signin';
const TRANSACTION_TTL_SECONDS = 600;

interface SignInTransaction {
  interactionUid: string;
  providerId: string;
  secrets: Record<string, string>;
  /** Services' upstream scopes asked for (upstream-tokens.ts). */
  extraScopes?: string[];
}

/** What an interaction's details tell the sign-in: which services it is for, who is signed in. */
interface InteractionFacts {
  uid: string;
  params: { resource?: unknown };
  session?: { accountId?: string | undefined } | undefined;
}

export function registerSignInRoutes(app: FastifyInstance, context: InteractionContext): void {
  const { provider, store, identityProviders } = context;

  /** Starts the gateway's sign-in at one provider and sends the browser there. */
  const begin = async (reply: FastifyReply, details: InteractionFacts, providerId: string) => {
    const interactionUid = details.uid;
    const idp = identityProviders.get(providerId);
    if (!idp) return sendPage(reply, context, 404, errorPage({ title: 'Unknown sign-in option', message: 'That sign-in option does not exist.', status: 404 }));
    const state = randomBytes(24).toString('base64url');
    // The upstream scopes of the services this authorization is for (and those the user's token
    // already has), asked of the provider with its own: a service receiving the upstream token
    // gets a token that can do what it needs.
    const extraScopes = context.upstreamTokens ? await context.upstreamTokens.scopesForSignIn(details.session?.accountId, details.params.resource) : [];
    let start;
    try {
      start = await idp.begin({ state, callbackUrl: `${context.issuer}callback/${encodeURIComponent(idp.id)}`, ...(extraScopes.length > 0 ? { extraScopes } : {}) });
    } catch (error) {
      reply.request.log.error({ err: error, provider: idp.id }, 'identity provider not ready');
      return sendPage(reply, context, 503, errorPage({ title: 'Sign-in is unavailable', message: `${idp.name} cannot be reached right now. Try again in a minute.`, status: 503 }));
    }
    const transaction: SignInTransaction = { interactionUid, providerId: idp.id, secrets: start.secrets, extraScopes };
    await store.put(KIND, state, { ...transaction }, { ttlSeconds: TRANSACTION_TTL_SECONDS });
    return reply.redirect(start.url, 302);
  };

  app.get<{ Params: { uid: string } }>('/interaction/:uid', async (request, reply) => {
    const details = await provider.interactionDetails(request.raw, reply.raw);
    if (details.prompt.name === 'consent') return context.showConsent(request, reply, details);
    const choices = [...identityProviders.values()];
    if (choices.length === 1 && choices[0]) return begin(reply, details, choices[0].id);
    return sendPage(reply, context, 200, chooserPage({
      providers: choices.map((idp) => ({ id: idp.id, name: idp.name, icon: idp.icon, href: `/interaction/${details.uid}/signin/${encodeURIComponent(idp.id)}` })),
    }));
  });

  app.get<{ Params: { uid: string; provider: string } }>('/interaction/:uid/signin/:provider', async (request, reply) => {
    const details = await provider.interactionDetails(request.raw, reply.raw);
    return begin(reply, details, request.params.provider);
  });

  app.get<{ Params: { provider: string }; Querystring: Record<string, string> }>('/callback/:provider', async (request, reply) => {
    const state = request.query.state;
    const record = typeof state === 'string' && state ? await store.take(KIND, state) : undefined;
    const transaction = record?.value as unknown as SignInTransaction | undefined;
    if (!transaction || transaction.providerId !== request.params.provider) {
      return sendPage(reply, context, 400, errorPage({ title: 'Sign-in expired', message: 'This sign-in link was already used or has expired. Go back to the application and connect again.', status: 400 }));
    }
    const idp = identityProviders.get(transaction.providerId);
    if (!idp) return sendPage(reply, context, 400, errorPage({ title: 'Sign-in expired', message: 'That sign-in option is no longer configured.', status: 400 }));
    // The code exchange at the provider (token request, ID token check, userinfo): its latency is the provider's.
    const exchange = request.trace?.step('gatehouse.sign_in.exchange');
    try {
      const { identity, tokens } = await idp.complete({ currentUrl: new URL(request.url, context.issuer), state: state ?? '', secrets: transaction.secrets });
      exchange?.end('signed_in', { 'gatehouse.identity_provider': idp.id });
      return await finishSignIn(request, reply, context, transaction.interactionUid, identity, { providerId: idp.id, tokens, requestedScopes: transaction.extraScopes ?? [] });
    } catch (error) {
      if (!(error instanceof SignInError)) throw error;
      exchange?.end('failed', { 'gatehouse.identity_provider': idp.id });
      request.log.warn({ provider: idp.id, reason: error.message }, 'sign-in failed');
      return sendPage(reply, context, 400, errorPage({ title: 'Sign-in failed', message: error.userMessage, status: 400 }));
    }
  });

  registerDevSignIn(app, context);
}

function registerDevSignIn(app: FastifyInstance, context: InteractionContext): void {
  const { store } = context;
  const devProvider = [...context.identityProviders.values()].find((idp) => idp.type === 'dev');
  if (!devProvider) return;

  const render = async (reply: FastifyReply, state: string, status: number, error?: string, values?: Record<string, string>) => {
    const record = await store.get(KIND, state);
    if (!record) return sendPage(reply, context, 400, errorPage({ title: 'Sign-in expired', message: 'This sign-in page has expired. Go back to the application and connect again.', status: 400 }));
    const transaction = record.value as unknown as SignInTransaction;
    const formAction = await context.clientRedirectSource(transaction.interactionUid);
    return sendPage(reply, context, status, devSignInPage({
      action: `/signin/dev/${encodeURIComponent(state)}`,
      csrfToken: createCsrfToken(context.csrfSecret, `dev:${state}`),
      presets: defaultDevPresets,
      ...(error ? { error } : {}),
      ...(values ? { values } : {}),
    }), formAction);
  };

  app.get<{ Params: { state: string } }>('/signin/dev/:state', async (request, reply) => render(reply, request.params.state, 200));

  app.post<{ Params: { state: string }; Body: Record<string, string> }>('/signin/dev/:state', async (request, reply) => {
    const { state } = request.params;
    const fields = request.body ?? {};
    if (!verifyCsrfToken(context.csrfSecret, `dev:${state}`, fields.csrf)) {
      return sendPage(reply, context, 403, errorPage({ title: 'Form expired', message: 'The form was not accepted. Reload the page and try again.', status: 403 }));
    }
    let identity: Identity;
    try {
      identity = devIdentityFromForm(devProvider.id, fields);
    } catch (error) {
      if (!(error instanceof SignInError)) throw error;
      return render(reply, state, 400, error.userMessage, fields);
    }
    const record = await store.take(KIND, state);
    if (!record) return render(reply, state, 400);
    const transaction = record.value as unknown as SignInTransaction;
    return finishSignIn(request, reply, context, transaction.interactionUid, identity);
  });
}

/**
 * Applies the gateway-wide access policy to a fresh identity and resolves the login prompt:
 * allowed → the account is saved and the authorization request resumes; denied → the user
 * reads why, and the client receives `access_denied` when the user returns to it.
 */
async function finishSignIn(
  request: FastifyRequest,
  reply: FastifyReply,
  context: InteractionContext,
  interactionUid: string,
  identity: Identity,
  upstream?: { providerId: string; tokens: UpstreamTokens | undefined; requestedScopes: readonly string[] },
) {
  const interaction = await context.provider.Interaction.find(interactionUid);
  if (!interaction) {
    return sendPage(reply, context, 400, errorPage({ title: 'Sign-in expired', message: 'This sign-in took too long. Go back to the application and connect again.', status: 400 }));
  }
  const account = await saveAccount(context.store, identity);
  const decision = decideAccess(context.access, account);
  const client = { client: interaction.params.client_id, client_name: await clientNameOf(context, interaction.params.client_id) };
  const ttl = Math.max(1, interaction.exp - Math.floor(Date.now() / 1000));
  if (!decision.allowed) {
    request.log.warn({ event: 'access.denied', account: account.accountId, provider: identity.provider, reason: decision.reason }, 'sign-in denied by policy');
    context.audit.record('access.denied', { request_id: request.id, account: account.accountId, provider: identity.provider, ...client, reason: decision.reason });
    interaction.result = { error: 'access_denied', error_description: 'the signed-in user is not allowed to use this gateway' };
    await interaction.save(ttl);
    return sendPage(reply, context, 403, deniedPage({ reason: decision.userMessage, userEmail: account.email, returnTo: interaction.returnTo }));
  }
  request.log.info({ event: 'sign_in', account: account.accountId, provider: identity.provider, rule: decision.rule }, 'signed in');
  context.audit.record('sign_in', { request_id: request.id, account: account.accountId, provider: identity.provider, ...client, rule: decision.rule });
  if (upstream && context.upstreamTokens?.keepsTokensOf(upstream.providerId)) {
    await keepUpstreamTokens(request, context.upstreamTokens, account.accountId, upstream);
  }
  interaction.result = { login: { accountId: account.accountId } };
  await interaction.save(ttl);
  return reply.redirect(interaction.returnTo, 303);
}

/** The registered name of the client that asked, for the audit trail (and the metrics' client label). */
async function clientNameOf(context: InteractionContext, clientId: unknown): Promise<string | undefined> {
  if (typeof clientId !== 'string') return undefined;
  const client = await context.provider.Client.find(clientId).catch(() => undefined);
  return client?.clientName;
}

/** Stores a sign-in's upstream tokens (sealed; never logged) and says in the log what is missing. */
async function keepUpstreamTokens(
  request: FastifyRequest,
  keeper: UpstreamTokenKeeper,
  accountId: string,
  upstream: { providerId: string; tokens: UpstreamTokens | undefined; requestedScopes: readonly string[] },
): Promise<void> {
  const { providerId, tokens, requestedScopes } = upstream;
  if (!tokens) {
    request.log.warn({ event: 'upstream_token.none', account: accountId, provider: providerId }, 'the identity provider returned no tokens to keep for services that forward upstream tokens');
    return;
  }
  await keeper.save(accountId, providerId, tokens, requestedScopes);
  const granted = scopeSet(tokens.scope ?? requestedScopes.join(' '));
  const missing = requestedScopes.filter((scope) => !granted.has(scope));
  if (missing.length > 0) {
    request.log.warn({ event: 'upstream_token.scopes_missing', account: accountId, provider: providerId, missing }, 'the identity provider did not grant every upstream scope asked for');
  }
  if (!tokens.refreshToken && tokens.expiresAt !== undefined) {
    request.log.info({ event: 'upstream_token.no_refresh_token', account: accountId, provider: providerId }, 'the identity provider returned no refresh token: the user signs in again when the upstream token expires');
  }
}
