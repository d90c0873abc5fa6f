/**
 * Starts a real gateway for tests: a config built in code (as an operator's file would be),
 * on a free loopback port, with logs captured so tests can read them.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { buildConfig, type Config } from '../../src/config/index.ts';
import { startGateway, type Gateway, type GatewayOptions } from '../../src/app.ts';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface TestGateway extends Gateway {
  /** `http://127.0.0.1:PORT` with no trailing slash. */
  origin: string;
  config: Config;
  /** Every log line written so far, parsed. */
  logs: Array<Record<string, unknown>>;
  /** The raw log text, for grepping secrets. */
  logText(): string;
}

/**
 * The configuration a running test gateway would load on a reload: its address, store, key and
 * log level kept, everything else from `changes` (validated as a file would be).
 */
export function reloadedConfig(gateway: Pick<TestGateway, 'origin' | 'config'>, changes: Record<string, unknown>, source = 'reload test'): Config {
  return buildConfig({
    public_url: gateway.origin,
    listen: { host: '127.0.0.1', port: gateway.config.listen.port },
    store: { type: 'memory' },
    secrets: { encryption_key: gateway.config.secrets.encryption_key },
    log: { level: 'info' },
    ...changes,
  }, { source, env: {} });
}

export function testEncryptionKey(): string {
  return randomBytes(32).toString('base64');
}

/**
 * `raw` is a configuration object without `public_url`/`listen` (filled in with the port) and,
 * unless given, with a fresh encryption key and an in-memory store.
 */
export async function startTestGateway(raw: Record<string, unknown>, options: GatewayOptions & { port?: number } = {}): Promise<TestGateway> {
  const port = options.port ?? (await freePort());
  const origin = `http://127.0.0.1:${port}`;
  const config = buildConfig({
    public_url: origin,
    listen: { host: '127.0.0.1', port },
    store: { type: 'memory' },
    secrets: { encryption_key: testEncryptionKey() },
    log: { level: 'info' },
    ...raw,
  }, { source: 'test', env: {} });
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const gateway = await startGateway(config, { ...options, logDestination: destination });
  const extended = Object.assign(gateway, { origin, config, logText: () => chunks.join('') });
  return Object.defineProperty(extended, 'logs', {
    get: () => chunks.join('').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>),
  }) as TestGateway;
}
