/** The run's own HTTP: a free port, one plain request with a timeout, and waiting for a 200. */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { isRunning, type Launched } from './processes.ts';

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export interface Reply { status: number; headers: IncomingMessage['headers']; body: string }

export function httpCall(url: string, init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolveReply, reject) => {
    const req = httpRequest(url, { method: init.method ?? 'GET', headers: init.headers, agent: false, timeout: init.timeoutMs ?? 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolveReply({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within ${init.timeoutMs ?? 5000} ms`)));
    req.on('error', reject);
    req.end(init.body);
  });
}

/** Polls until `url` answers 200; returns ms from `since`, or throws after `timeoutMs`. */
export async function waitFor200(url: string, since: number, timeoutMs: number, proc: Launched | undefined, intervalMs = 10): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (proc && !isRunning(proc)) throw new Error(`${proc.name} exited before it was ready:\n${proc.stderrTail()}`);
    const status = await httpCall(url, { timeoutMs: 1000 }).then((reply) => reply.status, () => 0);
    if (status === 200) return performance.now() - since;
    await sleep(intervalMs);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms${proc ? `:\n${proc.stderrTail()}` : ''}`);
}
