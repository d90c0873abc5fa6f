/**
 * The consent prompt, and the page where people see and withdraw what they approved.
 *
 *   (GET /interaction/:uid with a consent prompt)  the consent page
 *   POST /interaction/:uid/consent                 approve or deny
 *   GET  /consents, POST /consents/withdraw        remembered consents of the signed-in user
 *
 * The consent page names the client (as it calls itself), the host its redirect URI points at,
 * the service and the scopes (MCP security best practices, "Confused Deputy"), and warns when
 * the client only redirects to this computer.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type Provider from 'oidc-provider';
import { createCsrfToken, verifyCsrfToken } from '../ops/csrf.ts';
import { formActionSource } from '../ops/security-headers.ts';
import { loadAccount } from './accounts.ts';
import { approveConsent, listConsents, requestedService, withdrawConsent } from './consents.ts';
import { isLocalOnly } from './redirect-uri.ts';
import { consentPage, consentsPage, errorPage, signedOutPage, withdrawnPage } from './views/index.ts';
import { sendPage, type InteractionContext } from './interaction-context.ts';

type InteractionDetails = Awaited<ReturnType<Provider['interactionDetails']>>;

function redirectHost(uri: string): string {
  const url = URL.parse(uri);
  if (!url) return uri;
  return url.protocol === 'https:' || url.protocol === 'http:' ? url.host : url.protocol.slice(0, -1);
}

export async function clientRedirectSource(provider: Provider, interactionUid: string): Promise<string[]> {
  const interaction = await provider.Interaction.find(interactionUid);
  const uri = interaction?.params.redirect_uri;
  const source = typeof uri === 'string' ? formActionSource(uri) : undefined;
  return source ? [source] : [];
}

export async function showConsent(context: InteractionContext, reply: FastifyReply, details: InteractionDetails) {
  const { provider, services } = context;
  const params = details.params as Record<string, unknown>;
  const client = await provider.Client.find(String(params.client_id));
  const service = requestedService(services, params.resource);
  const accountId = details.session?.accountId;
  const account = accountId ? await loadAccount(context.store, accountId) : undefined;
  if (!client || !service || !account) {
    return sendPage(reply, context, 400, errorPage({ title: 'Request expired', message: 'This request can no longer be completed. Go back to the application and connect again.', status: 400 }));
  }
  const redirectUri = String(params.redirect_uri ?? client.redirectUris?.[0] ?? '');
  const scopes = String(params.scope ?? '').split(' ').filter((scope) => service.scopes.includes(scope));
  const clientIdUrl = URL.parse(client.clientId);
  const source = formActionSource(redirectUri);
  return sendPage(reply, context, 200, consentPage({
    action: `/interaction/${details.uid}/consent`,
    csrfToken: createCsrfToken(context.csrfSecret, `consent:${details.uid}`),
    clientName: client.clientName ?? client.clientId,
    clientId: client.clientId,
    redirectHost: redirectHost(redirectUri),
    ...(clientIdUrl?.protocol === 'https:' ? { clientHost: clientIdUrl.host } : {}),
    localhostOnly: isLocalOnly(client.redirectUris ?? []),
    serviceName: service.displayName,
    serviceUrl: service.resourceUrl,
    scopes: scopes.map((name) => ({ name })),
    userEmail: account.email ?? account.accountId,
    ...(account.name ? { userName: account.name } : {}),
  }), source ? [source] : []);
}

export function registerConsentRoutes(app: FastifyInstance, context: InteractionContext): void {
  const { provider, store, services } = context;

  app.post<{ Params: { uid: string }; Body: Record<string, string> }>('/interaction/:uid/consent', async (request, reply) => {
    const details = await provider.interactionDetails(request.raw, reply.raw);
    const body = request.body ?? {};
    if (details.prompt.name !== 'consent' || !verifyCsrfToken(context.csrfSecret, `consent:${details.uid}`, body.csrf)) {
      return sendPage(reply, context, 403, errorPage({ title: 'Form expired', message: 'The form was not accepted. Go back to the application and connect again.', status: 403 }));
    }
    const params = details.params as Record<string, unknown>;
    const accountId = details.session?.accountId;
    const service = requestedService(services, params.resource);
    const client = await provider.Client.find(String(params.client_id));
    if (!accountId || !service || !client) {
      return sendPage(reply, context, 400, errorPage({ title: 'Request expired', message: 'This request can no longer be completed.', status: 400 }));
    }
    if (body.decision !== 'approve') {
      context.audit.record('consent.denied', { request_id: request.id, account: accountId, client: client.clientId, client_name: client.clientName, service: service.id });
      const url = await provider.interactionResult(request.raw, reply.raw, { error: 'access_denied', error_description: 'the user denied the request' });
      return reply.redirect(url, 303);
    }
    const scopes = String(params.scope ?? '').split(' ').filter((scope) => service.scopes.includes(scope));
    const grantId = await approveConsent(provider, store, {
      accountId, clientId: client.clientId, clientName: client.clientName ?? client.clientId, service, scopes,
    });
    context.audit.record('consent.given', { request_id: request.id, account: accountId, client: client.clientId, client_name: client.clientName, service: service.id, scopes });
    const url = await provider.interactionResult(request.raw, reply.raw, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return reply.redirect(url, 303);
  });

  const signedInAccount = async (request: FastifyRequest, reply: FastifyReply) => {
    const ctx = provider.createContext(request.raw, reply.raw);
    const session = await provider.Session.get(ctx as never);
    return session.accountId ? loadAccount(store, session.accountId) : undefined;
  };

  app.get('/consents', async (request, reply) => {
    const account = await signedInAccount(request, reply);
    if (!account) return sendPage(reply, context, 200, signedOutPage());
    const consents = await listConsents(store, account.accountId);
    return sendPage(reply, context, 200, consentsPage({
      action: '/consents/withdraw',
      csrfToken: createCsrfToken(context.csrfSecret, `consents:${account.accountId}`),
      userEmail: account.email ?? account.accountId,
      consents: consents.map((consent) => ({
        id: consent.id,
        clientName: consent.clientName,
        clientId: consent.clientId,
        serviceName: services.byId(consent.serviceId)?.displayName ?? consent.serviceId,
        scopes: consent.scopes,
        grantedAt: new Date(consent.grantedAt),
      })),
    }));
  });

  app.post<{ Body: Record<string, string> }>('/consents/withdraw', async (request, reply) => {
    const account = await signedInAccount(request, reply);
    const body = request.body ?? {};
    if (!account || !verifyCsrfToken(context.csrfSecret, `consents:${account.accountId}`, body.csrf)) {
      return sendPage(reply, context, 403, errorPage({ title: 'Form expired', message: 'The form was not accepted. Reload the page and try again.', status: 403 }));
    }
    const withdrawn = await withdrawConsent(store, account.accountId, String(body.consent ?? ''));
    if (!withdrawn) return sendPage(reply, context, 404, errorPage({ title: 'Not found', message: 'That consent does not exist any more.', status: 404 }));
    context.audit.record('consent.withdrawn', { request_id: request.id, account: account.accountId, client: withdrawn.clientId, client_name: withdrawn.clientName, service: withdrawn.serviceId });
    return sendPage(reply, context, 200, withdrawnPage({ clientName: withdrawn.clientName }));
  });
}
