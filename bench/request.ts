/**
 * What is sent: a real access token for each gateway service, the ~300-byte tools/call every
 * target receives, and each target's URLs for it, for idle streams and for the timed events.
 */
import { redeem, runCodeFlow, type FlowGateway } from '../test/support/oauth-flow.ts';
import { httpCall } from './http.ts';
import { TARGETS, type Target } from './options.ts';
import type { Servers } from './servers.ts';

/** A real access token: DCR of a public client, PKCE, the dev sign-in form, consent, /token. */
export async function accessToken(gatewayUrl: string, service: string): Promise<string> {
  const gateway: FlowGateway = { issuer: `${gatewayUrl}/`, listenUrl: gatewayUrl };
  const resource = `${gatewayUrl}/${service}/mcp`;
  const flow = await runCodeFlow(gateway, { params: { resource, scope: 'tools.call' }, user: { email: 'bench@example.com', name: 'Bench' } });
  if (!flow.code) throw new Error(`the authorization flow for ${resource} ended without a code: ${JSON.stringify(flow.result).slice(0, 500)}`);
  const tokens = await redeem(gateway, flow, { resource });
  const token = tokens.body.access_token;
  if (tokens.status !== 200 || typeof token !== 'string') throw new Error(`/token answered ${tokens.status}: ${JSON.stringify(tokens.body)}`);
  return token;
}

/** A ~300-byte MCP tools/call, as a client sends it. */
export const BODY = JSON.stringify({
  jsonrpc: '2.0',
  id: 42,
  method: 'tools/call',
  params: {
    name: 'search_documents',
    arguments: { query: 'quarterly revenue by region for the last two fiscal years', limit: 10, filters: { status: 'published', language: 'en', team: 'finance' } },
    _meta: { progressToken: 'bench-0001' },
  },
});

export interface Endpoints { post: Record<Target, string | undefined>; idle: Record<Target, string | undefined>; ticks: Record<Target, string | undefined> }

export function endpoints(servers: Servers): Endpoints {
  return {
    post: { direct: `${servers.backendUrl}/mcp`, nginx: servers.nginxUrl && `${servers.nginxUrl}/mcp`, node: `${servers.nodeProxyUrl}/mcp`, gateway: `${servers.gatewayUrl}/bench/mcp` },
    idle: { direct: `${servers.backendUrl}/mcp`, nginx: servers.nginxUrl && `${servers.nginxUrl}/mcp`, node: `${servers.nodeProxyUrl}/mcp`, gateway: `${servers.gatewayUrl}/bench/mcp` },
    ticks: { direct: `${servers.backendUrl}/ticks`, nginx: servers.nginxUrl && `${servers.nginxUrl}/ticks`, node: `${servers.nodeProxyUrl}/ticks`, gateway: `${servers.gatewayUrl}/ticks/mcp` },
  };
}

export function postHeaders(token: string): Record<string, string> {
  return {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-06-18',
    authorization: `Bearer ${token}`,
  };
}

/** Every target answers the POST with the backend's result; the gateway refuses it without a token. */
export async function sanityCheck(points: Endpoints, token: string): Promise<void> {
  for (const target of TARGETS) {
    const url = points.post[target];
    if (!url) continue;
    const reply = await httpCall(url, { method: 'POST', headers: postHeaders(token), body: BODY });
    if (reply.status !== 200 || !reply.body.includes('"result"')) throw new Error(`${target}: POST ${url} answered ${reply.status}: ${reply.body.slice(0, 300)}`);
  }
  const { authorization: _, ...anonymous } = postHeaders(token);
  const refused = await httpCall(points.post.gateway!, { method: 'POST', headers: anonymous, body: BODY });
  if (refused.status !== 401) throw new Error(`the gateway answered ${refused.status} to a request without a token, not 401`);
}
