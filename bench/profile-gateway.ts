/**
 * --profile: the gateway restarted under node --cpu-prof and run at saturation; the samples of
 * the measured run only are summarised by bench/profile.ts, the profile kept under bench/results/.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchGateway } from './gateway.ts';
import { runNodeLoad, runWrk, wrkScript } from './generators.ts';
import { waitFor200 } from './http.ts';
import type { Pinning, Tools } from './machine.ts';
import { CONNECTIONS, DURATION, RESULTS_DIR, ROOT, WARMUP } from './options.ts';
import { round, warn } from './output.ts';
import { summariseProfile, type ProfileSummary } from './profile.ts';
import { cpuSecondsOf, stop } from './processes.ts';
import { BODY, postHeaders, type Endpoints } from './request.ts';
import { scratchPath } from './scratch.ts';
import type { Servers } from './servers.ts';

export interface GatewayProfile { summary: ProfileSummary; file: string; requestsPerSecond: number; cpuUsPerRequest: number }

export async function profileGateway(tools: Tools, servers: Servers, points: Endpoints, token: string, pinning: Pinning): Promise<GatewayProfile | undefined> {
  await stop(servers.gateway, 'SIGTERM', 10_000);
  const dir = scratchPath('profile');
  mkdirSync(dir, { recursive: true });
  const gateway = launchGateway('gateway (profiled)', servers.gatewayConfig, pinning, scratchPath('gateway-profile.log'), ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
  await waitFor200(`${servers.gatewayUrl}/ready`, performance.now(), 30_000, gateway, 20);
  let run: { requestsPerSecond: number; requests: number };
  const script = tools.wrk ? wrkScript(token) : undefined;
  if (tools.wrk && script && WARMUP > 0) await runWrk(tools.wrk, script, points.post.gateway!, WARMUP, pinning);
  const cpuBefore = cpuSecondsOf(gateway.pid);
  const fromUs = Number(process.hrtime.bigint() / 1000n);
  if (tools.wrk && script) {
    run = await runWrk(tools.wrk, script, points.post.gateway!, DURATION, pinning);
  } else {
    const load = await runNodeLoad({ mode: 'closed', url: points.post.gateway!, headers: postHeaders(token), body: BODY, connections: CONNECTIONS, durationSeconds: DURATION, warmupSeconds: WARMUP }, pinning);
    run = { requestsPerSecond: load.requestsPerSecond, requests: load.completed };
  }
  const toUs = Number(process.hrtime.bigint() / 1000n);
  const cpuUsPerRequest = round(((cpuSecondsOf(gateway.pid) - cpuBefore) * 1e6) / run.requests, 1);
  // SIGINT runs the gateway's own shutdown; V8 writes the profile as the process exits.
  await stop(gateway, 'SIGINT', 15_000);
  const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
  if (!file) {
    warn('the profiled gateway wrote no .cpuprofile');
    return undefined;
  }
  mkdirSync(RESULTS_DIR, { recursive: true });
  const kept = join(RESULTS_DIR, 'gateway.cpuprofile');
  copyFileSync(join(dir, file), kept);
  // Only the samples of the measured run: not start-up, warm-up or shutdown.
  const summary = summariseProfile(JSON.parse(readFileSync(kept, 'utf8')), ROOT, 30, { fromUs, toUs });
  return { summary, file: kept, requestsPerSecond: run.requestsPerSecond, cpuUsPerRequest };
}
