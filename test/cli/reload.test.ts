/**
 * `gatehouse serve` reloads its configuration file on SIGHUP and, with `reload.watch: true`,
 * when the file changes; an invalid file is refused with its key paths and the running
 * configuration stays.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/gateway.ts';
import { killAll, startCli, type CliProcess } from './cli-process.ts';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-reload-'));
});

afterEach(async () => {
  await killAll();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A configuration serving `services` (each a name whose upstream nothing listens on). */
function configText(port: number, key: string, services: Record<string, string>, extra = ''): string {
  const entries = Object.entries(services).map(([name, upstream]) => `  ${name}: { upstream: "${upstream}" }`).join('\n');
  return `public_url: http://127.0.0.1:${port}
listen: { host: 127.0.0.1, port: ${port} }
store: { type: memory }
secrets: { encryption_key: "${key}" }
identity_providers: [{ id: dev, type: dev }]
access: { allow: { users: ["*"] } }
services:
${entries}
log: { level: info }
${extra}`;
}

async function statusOf(origin: string, path: string): Promise<number> {
  const response = await fetch(`${origin}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  await response.body?.cancel();
  return response.status;
}

/** Waits for the `count`-th line of output matching `pattern`. */
async function waitForNth(process: CliProcess, pattern: RegExp, count: number): Promise<void> {
  const global = new RegExp(pattern.source, 'g');
  const deadline = Date.now() + 10_000;
  while ((process.stdout().match(global)?.length ?? 0) < count) {
    if (Date.now() > deadline) throw new Error(`fewer than ${count} lines matching ${pattern}\n${process.stdout()}\n${process.stderr()}`);
    if (process.child.exitCode !== null) throw new Error(`exited before ${count} lines matching ${pattern}\n${process.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('serve: reloading the configuration', () => {
  it('reloads on SIGHUP, and refuses an invalid file with its key paths while the running configuration stays', async () => {
    const port = await freePort();
    const key = randomBytes(32).toString('base64');
    const path = join(dir, 'sighup.yaml');
    const origin = `http://127.0.0.1:${port}`;
    writeFileSync(path, configText(port, key, { one: 'http://127.0.0.1:9/mcp' }));
    const gateway = startCli(['serve', '--config', path]);
    await gateway.waitForOutput(/"msg":"gatehouse ready"/);
    expect(await statusOf(origin, '/one/mcp')).toBe(401);
    expect(await statusOf(origin, '/two/mcp')).toBe(404);

    writeFileSync(path, configText(port, key, { one: 'http://127.0.0.1:9/mcp', two: 'http://127.0.0.1:9/mcp' }));
    gateway.child.kill('SIGHUP');
    await waitForNth(gateway, /"msg":"configuration reloaded"/, 1);
    expect(await statusOf(origin, '/two/mcp')).toBe(401);
    expect(gateway.stdout()).toMatch(/"event":"config.reloaded","services":\{"added":\["two"\],"changed":\[\],"removed":\[\]\}/);

    writeFileSync(path, configText(port, key, { one: 'http://127.0.0.1:9/mcp', three: 'ftp://127.0.0.1/mcp' }));
    gateway.child.kill('SIGHUP');
    await waitForNth(gateway, /"event":"config.reload_refused"/, 1);
    expect(gateway.stdout()).toMatch(/services\.three\.upstream: must be an http/);
    expect(gateway.stdout()).toMatch(/The configuration in force stays/);
    expect(await statusOf(origin, '/two/mcp')).toBe(401);
    expect(await statusOf(origin, '/three/mcp')).toBe(404);
    expect(gateway.child.exitCode).toBeNull();

    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toBe(0);
  }, 30_000);

  it('reloads when the file changes with reload.watch, also when an editor replaces it by rename', async () => {
    const port = await freePort();
    const key = randomBytes(32).toString('base64');
    const path = join(dir, 'watched.yaml');
    const origin = `http://127.0.0.1:${port}`;
    const watch = 'reload: { watch: true }\n';
    writeFileSync(path, configText(port, key, { one: 'http://127.0.0.1:9/mcp' }, watch));
    const gateway = startCli(['serve', '--config', path]);
    await gateway.waitForOutput(/"msg":"gatehouse ready"/);
    expect(gateway.stdout()).toMatch(/"event":"config.watching"/);

    // Written in place.
    writeFileSync(path, configText(port, key, { one: 'http://127.0.0.1:9/mcp', two: 'http://127.0.0.1:9/mcp' }, watch));
    await waitForNth(gateway, /"msg":"configuration reloaded"/, 1);
    expect(await statusOf(origin, '/two/mcp')).toBe(401);

    // Saved beside and renamed over it, as editors do.
    const temporary = join(dir, '.watched.yaml.swp');
    writeFileSync(temporary, configText(port, key, { two: 'http://127.0.0.1:9/mcp' }, watch));
    renameSync(temporary, path);
    await waitForNth(gateway, /"msg":"configuration reloaded"/, 2);
    expect(await statusOf(origin, '/one/mcp')).toBe(404);
    expect(await statusOf(origin, '/two/mcp')).toBe(401);
    // One reload per change: the debounce folds the events of one save together.
    expect(gateway.stdout().match(/"event":"config.reload_requested"/g)).toHaveLength(2);

    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toBe(0);
  }, 30_000);

  it('reloads when a Kubernetes ConfigMap volume swaps its ..data symlink', async () => {
    const port = await freePort();
    const key = randomBytes(32).toString('base64');
    const volume = mkdtempSync(join(dir, 'configmap-'));
    const origin = `http://127.0.0.1:${port}`;
    const watch = 'reload: { watch: true }\n';
    // The kubelet's layout: a timestamped directory, `..data` pointing at it, the file a link through `..data`.
    const publish = (version: string, text: string) => {
      mkdirSync(join(volume, version));
      writeFileSync(join(volume, version, 'gatehouse.yaml'), text);
      symlinkSync(version, join(volume, '..data_tmp'));
      renameSync(join(volume, '..data_tmp'), join(volume, '..data'));
    };
    publish('..2025_01_01_00_00_00.1', configText(port, key, { one: 'http://127.0.0.1:9/mcp' }, watch));
    symlinkSync('..data/gatehouse.yaml', join(volume, 'gatehouse.yaml'));
    const gateway = startCli(['serve', '--config', join(volume, 'gatehouse.yaml')]);
    await gateway.waitForOutput(/"msg":"gatehouse ready"/);

    publish('..2025_01_01_00_01_00.2', configText(port, key, { one: 'http://127.0.0.1:9/mcp', two: 'http://127.0.0.1:9/mcp' }, watch));
    await waitForNth(gateway, /"msg":"configuration reloaded"/, 1);
    expect(await statusOf(origin, '/two/mcp')).toBe(401);

    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toBe(0);
  }, 30_000);
});
