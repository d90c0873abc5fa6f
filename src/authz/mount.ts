/**
 * oidc-provider's endpoints, mounted at the origin root of the gateway's Fastify server.
 *
 * Requests are handed to oidc-provider raw, before Fastify reads the body (oidc-provider
 * parses its own). The Host and scheme it sees are those of the public URL, whatever the
 * request came in on, so every endpoint URL it prints is the issuer's.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import type Provider from 'oidc-provider';

const PROVIDER_ROUTES: Array<[HTTPMethods[], string]> = [
  [['GET'], '/authorize'],
  [['GET'], '/authorize/:uid'],
  [['POST', 'OPTIONS'], '/token'],
  [['GET', 'OPTIONS'], '/jwks'],
  [['GET', 'OPTIONS'], '/.well-known/openid-configuration'],
  [['GET', 'OPTIONS'], '/.well-known/oauth-authorization-server'],
  [['POST'], '/register'],
  [['GET', 'PUT', 'DELETE'], '/register/:clientId'],
  [['POST', 'OPTIONS'], '/revoke'],
  [['POST', 'OPTIONS'], '/introspect'],
];

/** Registration is called from browsers too (MCP Inspector, vscode.dev): open CORS. */
const REGISTRATION_CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, PUT, DELETE, OPTIONS',
  'access-control-allow-headers': 'Authorization, Content-Type, MCP-Protocol-Version',
  'access-control-max-age': '600',
};

export function mountAuthorizationServer(app: FastifyInstance, provider: Provider, issuer: string): void {
  const issuerUrl = new URL(issuer);
  const callback = provider.callback();

  const handOver = async (request: FastifyRequest, reply: FastifyReply) => {
    const headers = request.raw.headers;
    for (const name of Object.keys(headers)) {
      if (name.startsWith('x-forwarded-')) delete headers[name];
    }
    headers.host = issuerUrl.host;
    headers['x-forwarded-proto'] = issuerUrl.protocol.slice(0, -1);
    headers['x-forwarded-for'] = request.ip;
    // oidc-provider's events (the audit trail: token.issued, client.registered, …) name the
    // request by this header: the gateway's id, also when the client sent none.
    headers['x-request-id'] = request.id;
    if (request.url.startsWith('/register')) {
      for (const [name, value] of Object.entries(REGISTRATION_CORS)) reply.raw.setHeader(name, value);
    }
    reply.raw.setHeader('x-request-id', request.id);
    reply.hijack();
    callback(request.raw, reply.raw);
    return reply;
  };

  for (const [methods, url] of PROVIDER_ROUTES) {
    app.route({ method: methods, url, onRequest: handOver, handler: async () => undefined });
  }
  app.route({
    method: 'OPTIONS',
    url: '/register',
    handler: async (_request, reply) => reply.code(204).headers(REGISTRATION_CORS).send(),
  });
  app.route({
    method: 'OPTIONS',
    url: '/register/:clientId',
    handler: async (_request, reply) => reply.code(204).headers(REGISTRATION_CORS).send(),
  });
}
