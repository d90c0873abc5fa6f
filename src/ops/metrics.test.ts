import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../store/index.ts';
import { timedStore } from '../store/timed.ts';
import type { AuditLog } from './audit.ts';
import { countAuditEvents } from './audit-metrics.ts';
import { CLIENT_LABEL_CAP, createMetrics, normaliseLabel } from './metrics.ts';

/** The samples of one metric in the text exposition: labels (as written) → value. */
function samples(text: string, name: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(\{.*\})? (\S+)$/.exec(line);
    if (match && match[1] === name) found.set(match[2] ?? '', Number(match[3]));
  }
  return found;
}

function labelValues(text: string, name: string, label: string): string[] {
  return [...samples(text, name).keys()].map((labels) => new RegExp(`${label}="((?:[^"\\\\]|\\\\.)*)"`).exec(labels)?.[1] ?? '');
}

const silentAudit = (): AuditLog & { events: string[] } => {
  const events: string[] = [];
  return { events, record: (event) => void events.push(event), flush: async () => undefined };
};

describe('metrics', () => {
  it('counts requests by service, route, method and status, with durations, in a registry of its own', async () => {
    const metrics = createMetrics();
    const other = createMetrics();
    metrics.requestEnded('demo', '/*', 'POST', 200, 0.02);
    metrics.requestEnded('demo', '/*', 'POST', 200, 0.03);
    metrics.requestEnded('', '/token', 'POST', 400, 0.01);
    metrics.requestEnded('', 'unmatched', 'BREW', 499, 0.5);
    const text = await metrics.render();
    const requests = samples(text, 'gatehouse_http_requests_total');
    expect(requests.get('{service="demo",route="/*",method="POST",status="200"}')).toBe(2);
    expect(requests.get('{service="",route="/token",method="POST",status="400"}')).toBe(1);
    expect(requests.get('{service="",route="unmatched",method="other",status="499"}')).toBe(1);
    expect(samples(text, 'gatehouse_http_request_duration_seconds_count').get('{service="demo",route="/*",method="POST"}')).toBe(2);
    expect(samples(text, 'gatehouse_http_request_duration_seconds_sum').get('{service="demo",route="/*",method="POST"}')).toBeCloseTo(0.05);
    // Process metrics come along, unprefixed as every Node exporter names them.
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    // Another gateway in the same process counts on its own.
    expect(samples(await other.render(), 'gatehouse_http_requests_total').size).toBe(0);
  });

  it('gives each service one object that keeps upstream, stream and process figures', async () => {
    const metrics = createMetrics();
    const demo = metrics.forService('demo');
    expect(metrics.forService('demo')).toBe(demo);
    demo.upstreamResponded(0.004);
    demo.upstreamFailed('timeout');
    demo.upstreamFailed('timeout');
    demo.sseStreamOpened();
    demo.sseStreamOpened();
    demo.sseStreamClosed();
    demo.stdioProcessStarted();
    demo.stdioProcessStarted();
    demo.stdioProcessExited('crashed');
    demo.webSocketOpened();
    demo.circuitStateChanged('open');
    metrics.storeOperation('get', 0.001, true);
    metrics.storeOperation('get', 0.002, false);
    metrics.rateLimited('token', 'ip');
    const text = await metrics.render();
    expect(samples(text, 'gatehouse_upstream_response_seconds_count').get('{service="demo"}')).toBe(1);
    expect(samples(text, 'gatehouse_upstream_errors_total').get('{service="demo",kind="timeout"}')).toBe(2);
    expect(samples(text, 'gatehouse_sse_streams').get('{service="demo"}')).toBe(1);
    expect(samples(text, 'gatehouse_stdio_processes').get('{service="demo"}')).toBe(1);
    expect(samples(text, 'gatehouse_stdio_process_exits_total').get('{service="demo",reason="crashed"}')).toBe(1);
    expect(samples(text, 'gatehouse_websocket_connections').get('{service="demo"}')).toBe(1);
    expect(samples(text, 'gatehouse_circuit_state')).toEqual(new Map([
      ['{service="demo",state="closed"}', 0], ['{service="demo",state="open"}', 1], ['{service="demo",state="half_open"}', 0],
    ]));
    expect(samples(text, 'gatehouse_store_operation_seconds_count').get('{operation="get"}')).toBe(2);
    expect(samples(text, 'gatehouse_store_errors_total').get('{operation="get"}')).toBe(1);
    expect(samples(text, 'gatehouse_rate_limited_total').get('{endpoint="token",scope="ip"}')).toBe(1);
  });

  it(`labels at most ${CLIENT_LABEL_CAP} client names, normalised; the rest are "other"`, async () => {
    const metrics = createMetrics();
    for (let i = 0; i < CLIENT_LABEL_CAP + 20; i++) metrics.authEvent('client.registered', { client: `Client ${i}` });
    metrics.authEvent('client.registered', { client: 'Client 3' });
    metrics.authEvent('client.registered', { client: `  Visual\u0000Studio\n  Code${'x'.repeat(100)}` });
    metrics.authEvent('client.registered', {});
    const text = await metrics.render();
    const clients = labelValues(text, 'gatehouse_auth_events_total', 'client');
    expect(clients).toContain('Client 3');
    expect(clients).toContain('other');
    expect(clients).toContain('unknown');
    expect(new Set(clients).size).toBe(CLIENT_LABEL_CAP + 2);
    expect(samples(text, 'gatehouse_auth_events_total').get('{event="client.registered",client="other",provider=""}')).toBe(21);
    expect(normaliseLabel(`  Visual\u0000Studio\n  Code${'x'.repeat(100)}`)).toMatch(/^Visual Studio Codex+$/);
    expect(normaliseLabel(`Visual Studio Code${'x'.repeat(100)}`)).toHaveLength(48);
  });
});

describe('audit events as metrics', () => {
  it('labels by client name and provider, never by client id or account', async () => {
    const metrics = createMetrics();
    const inner = silentAudit();
    const audit = countAuditEvents(inner, metrics, [{ client_id: 'static-agent', name: 'Internal agent' }]);
    const id = 'd2f1c0de-5ecr-e7id-0000-000000000001';
    audit.record('client.registered', { client: id, client_name: 'Claude' });
    audit.record('sign_in', { account: 'github:12345', provider: 'github', client: id });
    audit.record('token.issued', { account: 'github:12345', client: id });
    audit.record('access.denied', { account: 'corp:eve', client: 'static-agent', service: 'demo' });
    audit.record('token.refreshed', { client: 'never-seen-before' });
    audit.record('consent.given', { client: 'nameless', client_name: 'nameless', account: 'corp:bob' });
    expect(inner.events).toEqual(['client.registered', 'sign_in', 'token.issued', 'access.denied', 'token.refreshed', 'consent.given']);
    const text = await metrics.render();
    const events = samples(text, 'gatehouse_auth_events_total');
    // Registered, but not used by anyone signed in yet: not a label of its own.
    expect(events.get('{event="client.registered",client="other",provider=""}')).toBe(1);
    expect(events.get('{event="sign_in",client="Claude",provider="github"}')).toBe(1);
    expect(events.get('{event="token.issued",client="Claude",provider="github"}')).toBe(1);
    expect(events.get('{event="access.denied",client="Internal agent",provider="corp"}')).toBe(1);
    expect(events.get('{event="token.refreshed",client="unknown",provider=""}')).toBe(1);
    expect(events.get('{event="consent.given",client="unknown",provider="corp"}')).toBe(1);
    const own = text.split('\n').filter((line) => line.startsWith('gatehouse_')).join('\n');
    for (const secretish of [id, 'never-seen-before', 'nameless', '12345', 'corp:eve', 'corp:bob']) expect(own).not.toContain(secretish);
  });

  it('gives a client name a label only once a signed-in person used such a client', async () => {
    const metrics = createMetrics();
    const audit = countAuditEvents(silentAudit(), metrics, [{ client_id: 'static-agent', name: 'Internal agent' }]);
    // Anyone may register: a flood of names must not take the label slots.
    for (let i = 0; i < CLIENT_LABEL_CAP * 2; i++) audit.record('client.registered', { client: `junk-${i}`, client_name: `Junk ${i}` });
    audit.record('token.refused', { client: 'junk-1' });
    audit.record('client.registered', { client: 'cursor-1', client_name: 'Cursor' });
    audit.record('token.issued', { client: 'cursor-1', account: 'corp:ann' });
    audit.record('client.registered', { client: 'cursor-2', client_name: 'Cursor' });
    audit.record('access.denied', { client: 'static-agent', account: 'corp:eve' });
    const text = await metrics.render();
    const events = samples(text, 'gatehouse_auth_events_total');
    expect([...new Set(labelValues(text, 'gatehouse_auth_events_total', 'client'))].sort()).toEqual(['Cursor', 'Internal agent', 'other']);
    expect(events.get('{event="client.registered",client="other",provider=""}')).toBe(CLIENT_LABEL_CAP * 2 + 1);
    expect(events.get('{event="token.refused",client="other",provider=""}')).toBe(1);
    expect(events.get('{event="token.issued",client="Cursor",provider="corp"}')).toBe(1);
    expect(events.get('{event="client.registered",client="Cursor",provider=""}')).toBe(1);
    expect(events.get('{event="access.denied",client="Internal agent",provider="corp"}')).toBe(1);
  });

  it('counts tool calls by service and outcome, with their durations', async () => {
    const metrics = createMetrics();
    const audit = countAuditEvents(silentAudit(), metrics);
    audit.record('tool.called', { service: 'demo', tool: 'add', outcome: 'ok', duration_ms: 120, account: 'dev:alice' });
    audit.record('tool.called', { service: 'demo', tool: 'add', outcome: 'error', duration_ms: 30 });
    audit.record('tool.called', { service: 'demo', tool: 'add', outcome: 'ok' });
    const text = await metrics.render();
    expect(samples(text, 'gatehouse_tool_calls_total')).toEqual(new Map([
      ['{service="demo",outcome="ok"}', 2], ['{service="demo",outcome="error"}', 1],
    ]));
    expect(samples(text, 'gatehouse_tool_call_duration_seconds_sum').get('{service="demo"}')).toBeCloseTo(0.15);
    expect(samples(text, 'gatehouse_auth_events_total').size).toBe(0);
    expect(text).not.toContain('tool="add"');
  });
});

describe('timed store', () => {
  it('times each operation by name, counts failures, and passes results and errors through', async () => {
    const seen: Array<[string, boolean]> = [];
    const engine = createMemoryStore();
    const store = timedStore(engine, (operation, seconds, ok) => {
      expect(seconds).toBeGreaterThanOrEqual(0);
      seen.push([operation, ok]);
    });
    expect(store.engine).toBe('memory');
    expect(typeof store.subscribe).toBe(typeof engine.subscribe);
    await store.put('kind', 'a', { x: 1 });
    expect((await store.get('kind', 'a'))?.value).toEqual({ x: 1 });
    await expect(store.increment('counter', -1)).rejects.toThrow(RangeError);
    await store.close();
    await expect(store.get('kind', 'a')).rejects.toThrow();
    expect(seen).toEqual([['put', true], ['get', true], ['increment', false], ['get', false]]);
  });
});
