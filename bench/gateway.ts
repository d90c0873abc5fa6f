/**
 * How the bench runs the gateway: its YAML configuration (the sqlite store, the dev identity
 * provider, two services in front of bench/backend.ts), its environment and its Node flags.
 */
import { closeSync, openSync } from 'node:fs';
import { GATEWAY_CLI, NODE, ROOT } from './options.ts';
import type { Pinning } from './machine.ts';
import { launch, type Launched } from './processes.ts';

export function gatewayYaml(port: number, backendUrl: string, storePath: string, key: string): string {
  return `# Written by bench/gateway.ts
public_url: http://127.0.0.1:${port}
listen: { host: 127.0.0.1, port: ${port} }
store: { type: sqlite, path: ${JSON.stringify(storePath)} }
secrets: { encryption_key: ${JSON.stringify(key)} }
identity_providers: [{ id: dev, type: dev }]
access: { allow: { users: ["*"] } }
services:
  bench: { upstream: ${backendUrl}/mcp, scopes: [tools.call] }
  ticks: { upstream: ${backendUrl}/ticks, scopes: [tools.call] }
log: { level: warn }
`;
}

/** The environment without GATEHOUSE_* overrides, so the YAML file is the whole configuration. */
export function gatewayEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GATEHOUSE_')));
}

/**
 * Node's flags for the gateway, as deploy/ runs it (Dockerfile, systemd unit): a larger young
 * generation, fewer scavenges and less promoted garbage (docs/performance.md, "Young generation").
 */
export const GATEWAY_NODE_FLAGS = ['--max-semi-space-size=32'];

/** Starts the gateway on the server CPU, its output appended to `logPath`. */
export function launchGateway(name: string, configPath: string, pinning: Pinning, logPath: string, nodeFlags: string[] = []): Launched {
  const logFd = openSync(logPath, 'a');
  const proc = launch(name, NODE, [...GATEWAY_NODE_FLAGS, ...nodeFlags, GATEWAY_CLI, 'serve', '--config', configPath], {
    cpu: pinning.servers, raiseFdLimit: true, env: gatewayEnv(), cwd: ROOT, stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  return proc;
}
