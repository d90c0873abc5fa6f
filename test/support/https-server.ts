/**
 * A local https server for tests that need a real TLS peer (client ID metadata documents,
 * `jwks_uri`), with a self-signed certificate made at start by the `openssl` CLI, and a
 * `fetch` for the gateway (`cimdFetch`) that trusts that certificate.
 *
 * The certificate names 127.0.0.1, localhost and every name given in `hosts`; the fetch
 * resolves those names to the given addresses itself (no DNS), so a test can use a
 * public-looking host name that actually points at this machine.
 */
import { execFile } from 'node:child_process';
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici';

export interface ServedResponse {
  status?: number;
  headers?: Record<string, string>;
  /** Objects are sent as JSON (with `content-type: application/json` unless given). */
  body?: unknown;
}

export type Route = ServedResponse | ((request: IncomingMessage, response: ServerResponse) => void);

export interface SeenRequest {
  method: string;
  path: string;
}

export interface TestHttpsServer {
  /** `https://127.0.0.1:PORT`. */
  origin: string;
  port: number;
  /** The PEM certificate (self-signed, so also the CA to trust). */
  ca: string;
  /** Every HTTP request received, in order. */
  requests: SeenRequest[];
  /** TLS connections accepted (a connection refused after connecting still counts here). */
  connections(): number;
  /** Serves `route` at `path` (exact match on the path, query ignored). */
  serve(path: string, route: Route): void;
  /** `https://{host}:{port}{path}`; host defaults to 127.0.0.1. */
  url(path: string, host?: string): string;
  close(): Promise<void>;
}

const run = promisify(execFile);

async function selfSignedCertificate(names: string[]): Promise<{ key: string; cert: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-tls-'));
  try {
    const san = ['IP:127.0.0.1', 'DNS:localhost', ...names.map((name) => `DNS:${name}`)].join(',');
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=gatehouse test', '-addext', `subjectAltName=${san}`,
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ]);
    return { key: await readFile(join(dir, 'key.pem'), 'utf8'), cert: await readFile(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function startHttpsServer(options: { hosts?: Record<string, string> } = {}): Promise<TestHttpsServer> {
  const { key, cert } = await selfSignedCertificate(Object.keys(options.hosts ?? {}));
  const routes = new Map<string, Route>();
  const requests: SeenRequest[] = [];
  let connections = 0;
  const server: Server = createServer({ key, cert }, (request, response) => {
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    requests.push({ method: request.method ?? 'GET', path });
    const route = routes.get(path);
    if (!route) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    if (typeof route === 'function') {
      route(request, response);
      return;
    }
    const isJson = route.body !== undefined && typeof route.body !== 'string';
    const headers = { ...(isJson ? { 'content-type': 'application/json' } : {}), ...route.headers };
    response.writeHead(route.status ?? 200, headers).end(isJson ? JSON.stringify(route.body) : (route.body as string | undefined));
  });
  server.on('secureConnection', () => { connections += 1; });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    origin: `https://127.0.0.1:${port}`,
    port,
    ca: cert,
    requests,
    connections: () => connections,
    serve: (path, route) => { routes.set(path, route); },
    url: (path, host = '127.0.0.1') => `https://${host}:${port}${path}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A `dns.lookup` that answers `hosts` itself and asks the system for every other name. */
function hostsLookup(hosts: Record<string, string>) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback) => {
    const address = hosts[hostname.toLowerCase()];
    if (address === undefined) {
      dnsLookup(hostname, options, callback as never);
      return;
    }
    const family = address.includes(':') ? 6 : 4;
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

/** oidc-provider's own connection-time check (not a public export, so loaded by path). */
type SsrfProtection = (dispatcher: Dispatcher) => Dispatcher;
const OIDC_PROVIDER_FETCH_HELPER: string = 'oidc-provider/lib/helpers/fetch_request.js';

export interface TrustingFetch {
  fetch: typeof fetch;
  /** How many requests arrived with oidc-provider's special-use-IP dispatcher attached. */
  guardedRequests(): number;
  close(): Promise<void>;
}

/**
 * A fetch for the gateway's `cimdFetch` option that trusts `ca` and resolves `hosts` locally.
 *
 * oidc-provider hands every outgoing request a dispatcher of its own that destroys connections
 * to special-use IP addresses (its SSRF protection). That dispatcher cannot be taught a CA, so
 * when one is given this fetch connects through its own CA-trusting agent carrying the very same
 * protection (oidc-provider's `applySSRFProtection`); when the gateway removed it (only with
 * `clients.cimd.allow_loopback`), it connects without the check.
 */
export async function trustingFetch(ca: string, hosts: Record<string, string> = {}): Promise<TrustingFetch> {
  const { applySSRFProtection } = (await import(OIDC_PROVIDER_FETCH_HELPER)) as { applySSRFProtection: SsrfProtection };
  const connect = { ca, lookup: hostsLookup(hosts) };
  const open = new Agent({ connect });
  const guarded = applySSRFProtection(new Agent({ connect }));
  let guardedRequests = 0;
  const trusting = async (input: string | URL | Request, init: RequestInit & { dispatcher?: Dispatcher } = {}) => {
    const { dispatcher, ...rest } = init;
    if (dispatcher) guardedRequests += 1;
    return undiciFetch(input as string, { ...(rest as Record<string, unknown>), dispatcher: dispatcher ? guarded : open });
  };
  return {
    fetch: trusting as unknown as typeof fetch,
    guardedRequests: () => guardedRequests,
    close: async () => {
      await Promise.all([open.close(), guarded.close()]);
    },
  };
}
