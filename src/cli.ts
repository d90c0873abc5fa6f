#!/usr/bin/env node
/**
 * gatehouse serve --config FILE     run the gateway (SIGHUP reloads the file)
 * gatehouse check-config --config F  validate a configuration (and reach its identity providers)
 * gatehouse dev [--port N]           dev mode: dev sign-in, a demo MCP server, SQLite in ./.gatehouse
 * gatehouse keys rotate --config F   new signing keys; the previous ones stay published until their tokens expire
 */
import module from 'node:module';
import { parseArgs } from 'node:util';
// Only dependency-free modules are imported statically: the rest is loaded once the Node.js
// version is known to be new enough, so `gatehouse` on an old Node says so instead of failing
// with a stack trace about a missing built-in module (node:sqlite).
import { ConfigError } from './config/config-error.ts';
import { GatehouseError } from './errors/index.ts';
import type { Config } from './config/index.ts';
import type { Gateway } from './app.ts';

// Compiled code of the gateway and its dependencies is cached on disk between starts (Node 22.1+):
// about a third of the start-up time in the benchmark (docs/performance.md).
module.enableCompileCache?.();

/**
 * package.json `engines`: node:sqlite is built in, without a flag, from 22.13; the
 * OpenTelemetry SDK (tracing) needs 22.15.
 */
const MINIMUM_NODE = [22, 15] as const;

function nodeIsRecentEnough(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > MINIMUM_NODE[0] || (major === MINIMUM_NODE[0] && minor >= MINIMUM_NODE[1]);
}

const USAGE = `Usage:
  gatehouse serve --config FILE         run the gateway (or set GATEHOUSE_CONFIG)
  gatehouse check-config --config FILE  validate a configuration file and reach its identity providers
  gatehouse dev [--port PORT]           dev mode: embedded sign-in, demo MCP server, SQLite under ./.gatehouse
  gatehouse keys rotate --config FILE   new signing keys for every replica; the previous ones stay
                                        published until the tokens they signed have expired
`;

function configPath(values: { config?: string | undefined }): string {
  const path = values.config ?? process.env.GATEHOUSE_CONFIG;
  if (!path) {
    process.stderr.write(`No configuration file given.\n\n${USAGE}`);
    process.exit(2);
  }
  return path;
}

/** A mistake in the command line itself: reported with the usage, exit status 2. */
class UsageError extends Error {}

/** Prints problems the way an operator wants them: what, where, no stack trace. */
function fail(error: unknown): never {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (error instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'))) {
    process.stderr.write(`gatehouse: ${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.format()}\n`);
    process.exit(2);
  }
  if (error instanceof GatehouseError) {
    process.stderr.write(`gatehouse: ${error.message} [${error.code}]\n`);
    process.exit(1);
  }
  if (code === 'EADDRINUSE' || code === 'EACCES') {
    process.stderr.write(`gatehouse: cannot listen: ${(error as Error).message}\n`);
    process.exit(1);
  }
  process.stderr.write(`gatehouse: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}

function stopOnSignals(gateway: Gateway): void {
  const stop = (signal: string) => {
    gateway.logger.info({ signal }, 'shutting down');
    // close() ends open streams and cuts connections at the grace deadline (ops/shutdown.ts);
    // this is the last resort if something else (the store, a flush) hangs after that.
    const limitMs = (gateway.shutdownGraceSeconds + 5) * 1000;
    setTimeout(() => {
      gateway.logger.warn({ signal }, `still shutting down after ${limitMs / 1000} s; exiting anyway`);
      process.exit(1);
    }, limitMs).unref();
    gateway.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

async function serve(path: string): Promise<void> {
  const { loadConfigFile } = await import('./config/index.ts');
  const { startGateway } = await import('./app.ts');
  const { reloadOnSignal } = await import('./ops/config-watch.ts');
  const config = loadConfigFile(path);
  const started = performance.now();
  const gateway = await startGateway(config);
  // SIGHUP, and with reload.watch a change of the file, reloads the configuration.
  reloadOnSignal(path, gateway, { watch: config.reload.watch });
  gateway.logger.info({ listen: gateway.listenUrl, issuer: gateway.issuer, ...(gateway.metricsUrl ? { metrics: `${gateway.metricsUrl}/metrics` } : {}), ms: Math.round(performance.now() - started) }, 'gatehouse ready');
  stopOnSignals(gateway);
}

async function checkConfig(path: string): Promise<void> {
  const { loadConfigFile } = await import('./config/index.ts');
  const { describeDiscoveryError, discoverOidcIssuer, presetOidcOptions } = await import('./identity/index.ts');
  const config: Config = loadConfigFile(path);
  const problems: string[] = [];
  await Promise.all(config.identity_providers.map(async (idp, index) => {
    // The generic oidc provider and the presets built on it (google, microsoft, …) discover.
    const options = idp.type === 'oidc' ? { issuer: idp.issuer, clientId: idp.client_id, clientSecret: idp.client_secret } : presetOidcOptions(idp);
    if (options === undefined) return;
    try {
      await discoverOidcIssuer(options);
    } catch (error) {
      const where = idp.type === 'oidc' ? `identity_providers[${index}].issuer` : `identity_providers[${index}] (${idp.type})`;
      problems.push(`  - ${where}: discovery of ${options.issuer} failed: ${describeDiscoveryError(error)}`);
    }
  }));
  if (problems.length > 0) {
    process.stderr.write(`Configuration ${path} is valid, but:\n${problems.join('\n')}\n`);
    process.exit(1);
  }
  const services = Object.keys(config.services).join(', ');
  process.stdout.write(`Configuration ${path} is valid: issuer ${config.public_url}, services ${services}, ${config.identity_providers.length} identity provider(s) reachable.\n`);
}

/**
 * `keys rotate`: runs beside the serving replicas, on the same store and encryption key; they
 * pick the new keys up by themselves (authz/signing-keys.ts), no restart.
 */
async function rotateKeys(path: string): Promise<void> {
  const { loadConfigFile } = await import('./config/index.ts');
  const { createSealer, createStore } = await import('./store/index.ts');
  const { retentionSeconds, rotateSigningKeys } = await import('./authz/signing-keys.ts');
  const config = loadConfigFile(path);
  const store = await createStore(config.store);
  try {
    const sealer = createSealer(config.secrets.encryption_key, config.secrets.previous_encryption_keys);
    const result = await rotateSigningKeys(store, sealer, { retainSeconds: retentionSeconds(config.tokens.access_ttl_seconds) });
    const until = new Date(result.publishUntil * 1000).toISOString();
    process.stdout.write(`Signing keys rotated: new ${result.added.join(', ')}; retired ${result.retired.join(', ') || 'none'} (published until ${until})`
      + `${result.dropped.length > 0 ? `; no longer published: ${result.dropped.join(', ')}` : ''}.\n`);
  } finally {
    await store.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...afterCommand] = argv;
  // `keys` takes a subcommand before its options.
  const subcommand = command === 'keys' && afterCommand[0] !== undefined && !afterCommand[0].startsWith('-') ? afterCommand[0] : undefined;
  const rest = subcommand === undefined ? afterCommand : afterCommand.slice(1);
  const { values } = parseArgs({
    args: rest,
    options: { config: { type: 'string', short: 'c' }, port: { type: 'string', short: 'p' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: false,
  });
  if (values.help || !command || command === 'help' || command === '--help') {
    process.stdout.write(USAGE);
    return;
  }
  if (!nodeIsRecentEnough(process.versions.node)) {
    process.stderr.write(`gatehouse: needs Node.js ${MINIMUM_NODE.join('.')} or later; this is ${process.version} (${process.execPath}).\n`);
    process.exit(1);
  }
  switch (command) {
    case 'serve': return serve(configPath(values));
    case 'check-config': return checkConfig(configPath(values));
    case 'keys':
      if (subcommand !== 'rotate') throw new UsageError(`keys takes the subcommand rotate${subcommand === undefined ? '' : `, not ${subcommand}`}`);
      return rotateKeys(configPath(values));
    case 'dev': {
      // Not 0: the issuer, and every URL printed, must name the port actually listened on.
      const port = values.port === undefined ? undefined : Number(values.port);
      if (port !== undefined && (!/^\d+$/.test(values.port ?? '') || port < 1 || port > 65535)) throw new UsageError(`--port must be a port number from 1 to 65535, not ${values.port}`);
      const { startDevMode } = await import('./dev-mode.ts');
      const gateway = await startDevMode({ ...(port !== undefined ? { port } : {}) });
      stopOnSignals(gateway);
      return;
    }
    default:
      process.stderr.write(`Unknown command: ${command}\n\n${USAGE}`);
      process.exit(2);
  }
}

main(process.argv.slice(2)).catch(fail);
