#!/usr/bin/env node
/**
 * gatehouse serve --config FILE     run the gateway
 * gatehouse check-config --config F  validate a configuration (and reach its identity providers)
 * gatehouse dev [--port N]           dev mode: dev sign-in, a demo MCP server, SQLite in ./.gatehouse
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile, type Config } from './config/index.ts';
import { startGateway, type Gateway } from './app.ts';
import { discoverOidcIssuer } from './identity/index.ts';
import { GatehouseError } from './errors/index.ts';
import { startDevMode } from './dev-mode.ts';

const USAGE = `Usage:
  gatehouse serve --config FILE         run the gateway (or set GATEHOUSE_CONFIG)
  gatehouse check-config --config FILE  validate a configuration file and reach its identity providers
  gatehouse dev [--port PORT]           dev mode: embedded sign-in, demo MCP server, SQLite under ./.gatehouse
`;

function configPath(values: { config?: string | undefined }): string {
  const path = values.config ?? process.env.GATEHOUSE_CONFIG;
  if (!path) {
    process.stderr.write(`No configuration file given.\n\n${USAGE}`);
    process.exit(2);
  }
  return path;
}

/** Prints problems the way an operator wants them: what, where, no stack trace. */
function fail(error: unknown): never {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.format()}\n`);
    process.exit(2);
  }
  if (error instanceof GatehouseError) {
    process.stderr.write(`gatehouse: ${error.message} [${error.code}]\n`);
    process.exit(1);
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
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
    gateway.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

async function serve(path: string): Promise<void> {
  const config = loadConfigFile(path);
  const started = performance.now();
  const gateway = await startGateway(config);
  gateway.logger.info({ listen: gateway.listenUrl, issuer: gateway.issuer, ms: Math.round(performance.now() - started) }, 'gatehouse ready');
  stopOnSignals(gateway);
}

async function checkConfig(path: string): Promise<void> {
  const config: Config = loadConfigFile(path);
  const problems: string[] = [];
  await Promise.all(config.identity_providers.map(async (idp, index) => {
    if (idp.type !== 'oidc') return;
    try {
      await discoverOidcIssuer({ issuer: idp.issuer, clientId: idp.client_id, clientSecret: idp.client_secret });
    } catch (error) {
      problems.push(`  - identity_providers[${index}].issuer: discovery of ${idp.issuer} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }));
  if (problems.length > 0) {
    process.stderr.write(`Configuration ${path} is valid, but:\n${problems.join('\n')}\n`);
    process.exit(1);
  }
  const services = Object.keys(config.services).join(', ');
  process.stdout.write(`Configuration ${path} is valid: issuer ${config.public_url}, services ${services}, ${config.identity_providers.length} identity provider(s) reachable.\n`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: { config: { type: 'string', short: 'c' }, port: { type: 'string', short: 'p' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: false,
  });
  if (values.help || !command || command === 'help' || command === '--help') {
    process.stdout.write(USAGE);
    return;
  }
  switch (command) {
    case 'serve': return serve(configPath(values));
    case 'check-config': return checkConfig(configPath(values));
    case 'dev': {
      const port = values.port === undefined ? undefined : Number(values.port);
      if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new Error(`--port must be a port number, not ${values.port}`);
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
