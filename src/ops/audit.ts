/**
 * The audit trail: security events as a stream of their own, one JSON line each, with stable
 * event names, to a file when `log.audit_file` is set, else to the main log marked
 * `"audit": true`. Never tokens, codes or secrets: only who, which client, which service,
 * what happened and why.
 */
import pino, { type Logger } from 'pino';
import { onlyScalars, unredactedChild } from './logger.ts';

export const AUDIT_EVENTS = [
  'sign_in',
  'access.denied',
  'consent.given',
  'consent.denied',
  'consent.withdrawn',
  'token.issued',
  'token.refreshed',
  'token.refused',
  'grant.revoked',
  'client.registered',
  'client.updated',
  'client.deleted',
  // One MCP tools/call through the gateway, on any transport: src/proxy/tool-calls.ts.
  'tool.called',
] as const;

export type AuditEvent = (typeof AUDIT_EVENTS)[number];

export interface AuditLog {
  record(event: AuditEvent, fields: Record<string, unknown>): void;
  flush(): Promise<void>;
}

/**
 * In the main log, the trail does not follow `log.level`: an operator who turns the log down to
 * `warn` must not lose security events. Only `silent` silences it too.
 */
function auditLevel(logger: Logger): string {
  return logger.level === 'silent' ? 'silent' : 'info';
}

export function createAuditLog(options: { file?: string | undefined; logger: Logger }): AuditLog {
  const destination = options.file ? pino.destination({ dest: options.file, mkdir: true, sync: false }) : undefined;
  const sink = destination
    ? pino({ base: { name: 'gatehouse', stream: 'audit' }, timestamp: pino.stdTimeFunctions.isoTime }, destination)
    : options.logger.child({ audit: true }, { level: auditLevel(options.logger) });
  // Lines of scalars only (every tool.called line without arguments) skip the main log's
  // redaction, which leaves them as they are anyway, at a fraction of the cost (logger.ts).
  const scalarSink = destination ? sink : unredactedChild(options.logger, { audit: true }, { level: auditLevel(options.logger) });
  return {
    record(event, fields) {
      (onlyScalars(fields) ? scalarSink : sink).info({ ...fields, event }, event);
    },
    async flush() {
      if (destination) await new Promise<void>((resolve) => destination.flush(() => resolve()));
    },
  };
}

/** What the audit trail needs from oidc-provider's events (its context objects, loosely). */
interface ProviderEvents {
  on(event: string, listener: (...args: any[]) => void): unknown;
}

interface EventContext {
  oidc?: {
    client?: { clientId?: string; clientName?: string };
    params?: Record<string, unknown>;
    entities?: { Grant?: { accountId?: string } ; Account?: { accountId?: string } };
  };
  id?: string;
  req?: { headers?: Record<string, unknown> };
}

/**
 * Records oidc-provider's token and client events, and logs its server errors (which it
 * otherwise keeps to itself).
 */
export function auditAuthorizationServer(provider: ProviderEvents, audit: Pick<AuditLog, 'record'>, logger: Logger): void {
  const who = (ctx: EventContext) => ({
    request_id: ctx.req?.headers?.['x-request-id'],
    client: ctx.oidc?.client?.clientId,
    // The name the client registered with: what metrics label clients by (ids are unbounded).
    client_name: ctx.oidc?.client?.clientName,
    account: ctx.oidc?.entities?.Account?.accountId ?? ctx.oidc?.entities?.Grant?.accountId,
  });
  provider.on('grant.success', (ctx: EventContext) => {
    const grantType = ctx.oidc?.params?.grant_type;
    audit.record(grantType === 'refresh_token' ? 'token.refreshed' : 'token.issued', { ...who(ctx), grant_type: grantType });
  });
  provider.on('grant.error', (ctx: EventContext, error: { error?: string; error_description?: string }) => {
    audit.record('token.refused', { ...who(ctx), grant_type: ctx.oidc?.params?.grant_type, error: error?.error, reason: error?.error_description });
  });
  provider.on('grant.revoked', (ctx: EventContext, grantId: string) => {
    audit.record('grant.revoked', { ...who(ctx), grant: grantId });
  });
  provider.on('registration_create.success', (ctx: EventContext, client: { clientId?: string; clientName?: string }) => {
    audit.record('client.registered', { request_id: who(ctx).request_id, client: client?.clientId, client_name: client?.clientName });
  });
  provider.on('registration_update.success', (ctx: EventContext) => audit.record('client.updated', who(ctx)));
  provider.on('registration_delete.success', (ctx: EventContext) => audit.record('client.deleted', who(ctx)));
  provider.on('server_error', (_ctx: EventContext, error: unknown) => logger.error({ err: error }, 'authorization server error'));
}
