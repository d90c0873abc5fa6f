/**
 * Counts what the audit trail records: every event it writes also moves
 * `gatehouse_auth_events_total{event, client, provider}`, and `tool.called` moves the tool call
 * metrics instead. The audit record is the one place each event is raised, so counting there
 * keeps the metrics and the trail in agreement.
 *
 * Labels, from the record's fields:
 *   client    the client's name (`client_name`); a record that names only the client id gets the
 *             name seen with that id before (registration, token and consent events carry it),
 *             else `unknown`. Never the id itself: dynamically registered ids are unbounded.
 *             A name becomes a label only once a client of that name was used by a signed-in
 *             person (sign-in, consent, token issued or refreshed), or is a static client's;
 *             until then it counts as `other`. Registration is open to anyone, and names only
 *             registered would otherwise fill the label cap (metrics.ts) with junk.
 *   provider  `provider`, else the provider part of the account id (`<provider>:<subject>`).
 */
import type { AuditEvent, AuditLog } from './audit.ts';
import type { Metrics } from './metrics.ts';

/** Client ids whose names are remembered; beyond that the memory starts over. */
const REMEMBERED_CLIENTS = 10_000;

/** Events only a client that a signed-in person used can cause: its name may become a label. */
const VOUCHING: ReadonlySet<AuditEvent> = new Set<AuditEvent>(['sign_in', 'consent.given', 'token.issued', 'token.refreshed']);
/** Names of clients not (yet) used by anyone signed in. */
const UNVOUCHED = 'other';

export interface KnownClient {
  client_id: string;
  name: string;
}

/** The audit log, counting each record in `metrics`. `clients` are names known from the start (static clients). */
export function countAuditEvents(audit: AuditLog, metrics: Pick<Metrics, 'authEvent' | 'toolCalled'>, clients: readonly KnownClient[] = []): AuditLog {
  const names = new Map<string, string>(clients.map((client) => [client.client_id, client.name]));
  const vouched = new Set<string>(clients.map((client) => client.name));
  const labelOf = (event: AuditEvent, name: string | undefined): string | undefined => {
    if (name === undefined || vouched.has(name)) return name;
    if (!VOUCHING.has(event) || vouched.size >= REMEMBERED_CLIENTS) return UNVOUCHED;
    vouched.add(name);
    return name;
  };

  const clientName = (fields: Record<string, unknown>): string | undefined => {
    const id = typeof fields.client === 'string' ? fields.client : undefined;
    // A consent keeps the id as the name of a client that has none: that is no name.
    const named = typeof fields.client_name === 'string' && fields.client_name !== '' && fields.client_name !== id ? fields.client_name : undefined;
    if (id === undefined) return named;
    if (named === undefined) return names.get(id);
    if (names.get(id) !== named) {
      if (names.size >= REMEMBERED_CLIENTS) names.clear();
      names.set(id, named);
    }
    return named;
  };

  const count = (event: AuditEvent, fields: Record<string, unknown>): void => {
    if (event === 'tool.called') {
      const ms = typeof fields.duration_ms === 'number' ? fields.duration_ms : undefined;
      metrics.toolCalled(String(fields.service ?? ''), String(fields.outcome ?? 'unknown'), ms === undefined ? undefined : ms / 1000);
      return;
    }
    const account = typeof fields.account === 'string' ? fields.account : undefined;
    const provider = typeof fields.provider === 'string' ? fields.provider : account?.includes(':') ? account.slice(0, account.indexOf(':')) : undefined;
    metrics.authEvent(event, { client: labelOf(event, clientName(fields)), provider });
  };

  // Spread: whatever else the audit log offers passes through unchanged.
  return {
    ...audit,
    record(event, fields) {
      audit.record(event, fields);
      count(event, fields);
    },
  };
}
