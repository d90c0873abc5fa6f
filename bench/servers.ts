/**
 * The servers under test, all on the server CPU: bench/backend.ts, the bare Node proxy
 * (bench/node-proxy.ts), nginx as a plain reverse proxy (when installed) and the gateway.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gatewayYaml, GATEWAY_NODE_FLAGS, launchGateway } from './gateway.ts';
import { freePort, waitFor200 } from './http.ts';
import type { Pinning, Tools } from './machine.ts';
import { GATEWAY_CLI, NODE, ROOT, SSE_STREAMS, type Target } from './options.ts';
import { log } from './output.ts';
import { childrenOf, commandLineOf, launch, type Launched } from './processes.ts';
import { scratchPath } from './scratch.ts';

export interface Servers {
  /** The process doing the proxying for each target (the nginx worker, the gateway). */
  proxyPid: Record<Target, number | undefined>;
  backend: Launched;
  backendUrl: string;
  nodeProxyUrl: string;
  nginx: Launched | undefined;
  nginxUrl: string | undefined;
  gateway: Launched;
  gatewayUrl: string;
  gatewayConfig: string;
}

/** Starts one of the bench's own Node servers, which print `{"port":N}` once listening. */
async function startNodeServer(name: string, script: string, args: string[], pinning: Pinning): Promise<{ proc: Launched; url: string }> {
  const proc = launch(name, NODE, [join(ROOT, 'bench', script), ...args], { cpu: pinning.servers, raiseFdLimit: true });
  const port = await new Promise<number>((resolvePort, reject) => {
    let buffer = '';
    const timer = setTimeout(() => reject(new Error(`the ${name} did not start within 10 s:\n${proc.stderrTail()}`)), 10_000);
    proc.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk;
      const line = /\{"port":(\d+)\}/.exec(buffer);
      if (line) {
        clearTimeout(timer);
        resolvePort(Number(line[1]));
      }
    });
    void proc.exited.then((code) => reject(new Error(`the ${name} exited (${code}):\n${proc.stderrTail()}`)));
  });
  return { proc, url: `http://127.0.0.1:${port}` };
}

function nginxConfig(dir: string, port: number, backendPort: number): string {
  const workerConnections = Math.max(4096, SSE_STREAMS * 2 + 256);
  return `# Written by bench/servers.ts: nginx as a plain reverse proxy, its own pid and log paths.
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${workerConnections}; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Streams (SSE) must pass event by event, as the gateway forwards them.
      proxy_buffering off;
      proxy_read_timeout 1h;
    }
  }
}
`;
}

async function startNginx(binary: string, pinning: Pinning, backendUrl: string): Promise<{ proc: Launched; url: string }> {
  const dir = scratchPath('nginx');
  mkdirSync(dir, { recursive: true });
  // Workers run as an unprivileged user when the master is root.
  chmodSync(scratchPath(), 0o755);
  chmodSync(dir, 0o755);
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, port, Number(new URL(backendUrl).port)));
  const test = spawnSync(binary, ['-t', '-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { encoding: 'utf8', timeout: 10_000 });
  if (test.status !== 0) throw new Error(`nginx -t failed:\n${test.stderr}`);
  const proc = launch('nginx', binary, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { cpu: pinning.servers, raiseFdLimit: true });
  const url = `http://127.0.0.1:${port}`;
  await waitFor200(`${url}/streams`, performance.now(), 10_000, proc);
  return { proc, url };
}

/** The worker does the proxying: its CPU time and memory are nginx's figures, not the master's. */
function nginxWorker(nginx: Launched): number | undefined {
  return childrenOf(nginx.pid).find((pid) => /nginx: worker/.test(commandLineOf(pid)));
}

async function startGateway(backendUrl: string, pinning: Pinning): Promise<{ proc: Launched; url: string; config: string }> {
  const port = await freePort();
  const config = scratchPath('gateway.yaml');
  writeFileSync(config, gatewayYaml(port, backendUrl, scratchPath('gateway.db'), randomBytes(32).toString('base64')));
  const proc = launchGateway('gateway', config, pinning, scratchPath('gateway.log'));
  const url = `http://127.0.0.1:${port}`;
  await waitFor200(`${url}/ready`, performance.now(), 30_000, proc, 20);
  if (!commandLineOf(proc.pid).includes(`${GATEWAY_CLI} serve`)) throw new Error(`pid ${proc.pid} is not the gateway: ${commandLineOf(proc.pid)}`);
  return { proc, url, config };
}

export async function startServers(tools: Tools, pinning: Pinning): Promise<Servers> {
  const backend = await startNodeServer('backend', 'backend.ts', [], pinning);
  log(`  backend  ${backend.url}  (bench/backend.ts: node:http, pid ${backend.proc.pid})`);
  const nodeProxy = await startNodeServer('node proxy', 'node-proxy.ts', [backend.url], pinning);
  log(`  node     ${nodeProxy.url}  (bench/node-proxy.ts: node:http + undici, no auth, pid ${nodeProxy.proc.pid})`);
  let nginx: { proc: Launched; url: string } | undefined;
  if (tools.nginx) {
    nginx = await startNginx(tools.nginx, pinning, backend.url);
    log(`  nginx    ${nginx.url}  (${tools.nginxVersion}, worker_processes 1, pid ${nginx.proc.pid})`);
  }
  const gateway = await startGateway(backend.url, pinning);
  log(`  gateway  ${gateway.url}  (node ${GATEWAY_NODE_FLAGS.join(' ')} ${relative(ROOT, GATEWAY_CLI)} serve, sqlite store, pid ${gateway.proc.pid})`);
  const worker = nginx && nginxWorker(nginx.proc);
  if (nginx && worker === undefined) throw new Error('nginx is running but its worker process was not found');
  return {
    proxyPid: { direct: undefined, nginx: worker, node: nodeProxy.proc.pid, gateway: gateway.proc.pid },
    nodeProxyUrl: nodeProxy.url,
    backend: backend.proc, backendUrl: backend.url, nginx: nginx?.proc, nginxUrl: nginx?.url,
    gateway: gateway.proc, gatewayUrl: gateway.url, gatewayConfig: gateway.config,
  };
}
