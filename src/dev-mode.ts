/**
 * Dev mode (`gatehouse dev`, what `npm start` runs): no configuration file, loopback only, the
 * embedded dev identity provider, a demo MCP server as the service `demo`, and state in
 * SQLite under ./.gatehouse/ (with a generated encryption key kept beside it, mode 0600).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildConfig } from './config/index.ts';
import { startGateway, type Gateway } from './app.ts';
import { startDemoServer } from './demo/index.ts';

export const DEV_DEFAULT_PORT = 8080;

function devEncryptionKey(dataDir: string): string {
  const file = join(dataDir, 'dev-encryption-key');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const key = randomBytes(32).toString('base64');
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

export async function startDevMode(options: { port?: number; dataDir?: string; quiet?: boolean } = {}): Promise<Gateway> {
  const started = performance.now();
  const dataDir = resolve(options.dataDir ?? '.gatehouse');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const port = options.port ?? DEV_DEFAULT_PORT;
  const demo = await startDemoServer({ host: '127.0.0.1', port: 0 });

  const config = buildConfig({
    public_url: `http://127.0.0.1:${port}`,
    listen: { host: '127.0.0.1', port },
    store: { type: 'sqlite', path: join(dataDir, 'gatehouse.db') },
    secrets: { encryption_key: devEncryptionKey(dataDir) },
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: { demo: { upstream: demo.url, name: 'Demo MCP server', scopes: ['tools.read', 'tools.call'] } },
    clients: { cimd: { allow_loopback: true } },
    log: { level: process.env.GATEHOUSE_LOG__LEVEL ?? 'warn' },
    dev: {},
  }, { source: 'dev mode' });

  let gateway: Gateway;
  try {
    gateway = await startGateway(config);
  } catch (error) {
    await demo.close();
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new Error(`port ${port} is in use; choose another with: npm start -- --port 8181`);
    }
    throw error;
  }
  const close = gateway.close;
  gateway.close = async () => {
    await close();
    await demo.close();
  };

  if (!options.quiet) {
    const mcpUrl = `${gateway.issuer}demo/mcp`;
    process.stdout.write([
      '',
      `  Gatehouse dev mode is ready in ${Math.round(performance.now() - started)} ms.`,
      '',
      `  MCP server URL:  ${mcpUrl}`,
      '',
      `  Connect a client, e.g.:  npx @modelcontextprotocol/inspector   (Streamable HTTP, URL above)`,
      `                       or: claude mcp add --transport http demo ${mcpUrl}`,
      `  Sign in with any made-up email on the dev sign-in page. State: ${dataDir}`,
      '',
    ].join('\n') + '\n');
  }
  return gateway;
}
