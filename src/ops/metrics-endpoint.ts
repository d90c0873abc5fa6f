/**
 * Where Prometheus reads the metrics: `GET /metrics` on the gateway's own port, or, with
 * `metrics.listen`, on a listener of its own that serves nothing else.
 *
 * Either way only peers in `metrics.allowed_ips` may read them, judged by the TCP peer's address
 * (never X-Forwarded-For: a header anyone can send). An empty list, allowed with a listener of
 * its own only, lets anyone who reaches that port read. On the main port a request that carries
 * a proxy's forwarding header is refused too: a reverse proxy on the same host connects from
 * loopback, and would otherwise pass the internet's requests for /metrics as local ones.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { createAddressList } from '../proxy/forward-auth.ts';
import type { Metrics } from './metrics.ts';

export const METRICS_PATH = '/metrics';

export interface MetricsExposureConfig {
  listen?: { host: string; port: number } | undefined;
  allowed_ips: readonly string[];
}

export interface MetricsExposure {
  /** The separate listener's address (`http://127.0.0.1:9464`), when there is one. */
  url?: string | undefined;
  close(): Promise<void>;
}

const FORWARDING_HEADERS = ['forwarded', 'x-forwarded-for', 'x-real-ip'];

const refusal = (message: string) => JSON.stringify({ error: 'forbidden', error_description: message });

/** Serves the metrics as configured; resolves once a separate listener listens. */
export async function exposeMetrics(app: FastifyInstance, metrics: Pick<Metrics, 'render' | 'contentType'>, config: MetricsExposureConfig): Promise<MetricsExposure> {
  const listed = createAddressList(config.allowed_ips);
  const anyone = config.listen !== undefined && config.allowed_ips.length === 0;
  const peerAllowed = (address: string | undefined) => anyone || listed(address);

  if (!config.listen) {
    app.get(METRICS_PATH, async (request, reply) => {
      const forwarded = FORWARDING_HEADERS.some((name) => request.headers[name] !== undefined);
      if (forwarded || !peerAllowed(request.raw.socket.remoteAddress)) {
        request.log.warn({ event: 'metrics.refused', peer: request.raw.socket.remoteAddress, forwarded }, 'a /metrics request from an address not in metrics.allowed_ips');
        return reply.code(403).header('content-type', 'application/json').send(refusal('metrics are not served to this address'));
      }
      return reply.header('content-type', metrics.contentType).header('cache-control', 'no-store').send(await metrics.render());
    });
    return { close: async () => undefined };
  }

  const serve = (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    const path = (req.url ?? '/').split('?')[0];
    if (path !== METRICS_PATH || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not_found', error_description: `only GET ${METRICS_PATH} is served here` }));
      return;
    }
    if (!peerAllowed(req.socket.remoteAddress)) {
      app.log.warn({ event: 'metrics.refused', peer: req.socket.remoteAddress }, 'a /metrics request from an address not in metrics.allowed_ips');
      res.writeHead(403, { 'content-type': 'application/json' }).end(refusal('metrics are not served to this address'));
      return;
    }
    metrics.render().then((text) => {
      res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
      res.end(req.method === 'HEAD' ? undefined : text);
    }, (error: unknown) => {
      app.log.error({ err: error }, 'metrics could not be collected');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'server_error', error_description: 'the metrics could not be collected' }));
    });
  };
  const server = createServer({ keepAliveTimeout: 5000 }, serve);
  const { host, port } = config.listen;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
