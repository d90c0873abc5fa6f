/**
 * The command line as an operator runs it: `check-config` and `serve` as child processes on
 * the pinned Node, and the built `dist/cli.js`.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/gateway.ts';
import { startUpstreamIdp, type UpstreamIdp } from '../support/upstream-idp.ts';
import { cleanEnv, killAll, NODE, pollUntil, REPO, runCli, startCli } from './cli-process.ts';

let dir: string;
const idps: UpstreamIdp[] = [];

function key(): string {
  return randomBytes(32).toString('base64');
}

/** A complete, valid configuration whose one identity provider is the OIDC issuer given. */
function validConfig(issuer: string, port: number): string {
  return `public_url: http://127.0.0.1:${port}
listen: { host: 127.0.0.1, port: ${port} }
store: { type: memory }
secrets: { encryption_key: "${key()}" }
identity_providers:
  - id: corp
    type: oidc
    issuer: "${issuer}"
    client_id: gatehouse
    client_secret: upstream-secret
access: { allow: { domains: [example.com] } }
services:
  demo: { upstream: "http://127.0.0.1:9/mcp" }
log: { level: info }
`;
}

function writeConfig(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function startIdp(port = 0): Promise<UpstreamIdp> {
  const idp = await startUpstreamIdp({
    port,
    users: { alice: { sub: 'alice-1', email: 'alice@example.com', email_verified: true } },
    clients: [{ client_id: 'gatehouse', client_secret: 'upstream-secret', redirect_uris: ['http://127.0.0.1:9/callback/corp'] }],
  });
  idps.push(idp);
  return idp;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-cli-'));
});

afterEach(async () => {
  await killAll();
  await Promise.all(idps.splice(0).map((idp) => idp.close()));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('check-config', () => {
  it('lists every problem of an invalid file by key path, exits 2, and prints no stack trace', async () => {
    const bad = writeConfig('bad.yaml', `public_url: not a url
listen: { host: 127.0.0.1, port: eighty }
secrets: { encryption_key: "\${GATEHOUSE_CLI_TEST_UNSET_KEY}" }
identity_providers: [{ id: dev, type: dev }]
access: { allow: { users: ["*"] } }
services: { demo: { upstream: "http://127.0.0.1:3001/mcp" } }
colour: blue
`);
    const { code, stdout, stderr } = await runCli(['check-config', '--config', bad]);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain(`Invalid configuration in ${bad}:`);
    expect(stderr).toMatch(/^ {2}- public_url: must be a URL such as https:\/\/mcp\.example\.com \(line 1/m);
    expect(stderr).toMatch(/^ {2}- listen\.port: must be a whole number from 0 to 65535 \(line 2/m);
    expect(stderr).toMatch(/^ {2}- secrets\.encryption_key: environment variable GATEHOUSE_CLI_TEST_UNSET_KEY is not set \(line 3/m);
    expect(stderr).toMatch(/^ {2}- colour: unknown key/m);
    expect(stderr.trim().split('\n')).toHaveLength(5);
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(stderr).not.toMatch(/Error:|\.ts:\d+/);
  });

  it('refuses an unreadable file with exit 2 and the reason', async () => {
    const { code, stderr } = await runCli(['check-config', '--config', join(dir, 'missing.yaml')]);
    expect(code).toBe(2);
    expect(stderr).toContain('cannot read the file: no such file');
    expect(stderr).not.toMatch(/^\s+at /m);
  });

  it('asks for a file when none is given', async () => {
    const { code, stderr } = await runCli(['check-config']);
    expect(code).toBe(2);
    expect(stderr).toContain('No configuration file given.');
  });

  it('fails, naming identity_providers[0].issuer, when the issuer cannot be reached', async () => {
    const closed = await freePort();
    const path = writeConfig('unreachable.yaml', validConfig(`http://127.0.0.1:${closed}`, await freePort()));
    const { code, stdout, stderr } = await runCli(['check-config', '--config', path]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toContain(`Configuration ${path} is valid, but:`);
    expect(stderr).toContain(`identity_providers[0].issuer: discovery of http://127.0.0.1:${closed} failed: fetch failed`);
    // The cause an operator can act on, not just "fetch failed".
    expect(stderr).toMatch(/ECONNREFUSED/);
    expect(stderr).not.toMatch(/^\s+at /m);
  });

  it('passes when the file is valid and the issuer answers discovery', async () => {
    const idp = await startIdp();
    const port = await freePort();
    const path = writeConfig('good.yaml', validConfig(idp.issuer, port));
    const { code, stdout, stderr } = await runCli(['check-config', '--config', path]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toBe(`Configuration ${path} is valid: issuer http://127.0.0.1:${port}/, services demo, 1 identity provider(s) reachable.\n`);
  });
});

describe('serve', () => {
  it('starts with an unreachable issuer: healthy, not ready, and ready once the issuer comes up', async () => {
    const idpPort = await freePort();
    const port = await freePort();
    const path = writeConfig('serve.yaml', validConfig(`http://127.0.0.1:${idpPort}`, port));
    const gateway = startCli(['serve', '--config', path]);
    const origin = `http://127.0.0.1:${port}`;

    await gateway.waitForOutput(/"msg":"gatehouse ready"/);
    const health = await fetch(`${origin}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });

    const notReady = await fetch(`${origin}/ready`);
    expect(notReady.status).toBe(503);
    const body = await notReady.json() as { status: string; identity_providers: Record<string, { ready: boolean; detail?: string }> };
    expect(body.status).toBe('not_ready');
    expect(body.identity_providers.corp).toEqual({ ready: false, detail: 'discovery failed (ECONNREFUSED)' });
    // /ready is public: the issuer's address is in the log, not in the answer.
    expect(JSON.stringify(body)).not.toContain('127.0.0.1');
    expect(gateway.stdout()).toMatch(/identity provider discovery failed; retrying/);

    // The discovery retries come 1 s and 2 s after the first failure.
    const started = Date.now();
    await startIdp(idpPort);
    const ready = await pollUntil(`${origin}/ready`, (status) => status === 200, 6000);
    expect(ready.status, ready.body).toBe(200);
    expect(JSON.parse(ready.body).identity_providers.corp).toEqual({ ready: true });
    expect(Date.now() - started).toBeLessThan(4000);

    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toBe(0);
  });

  it('exits 2 with the problems when the file is invalid, and leaves nothing listening', async () => {
    const port = await freePort();
    const path = writeConfig('serve-bad.yaml', validConfig('ftp://idp.example.com', port));
    const { code, stderr } = await runCli(['serve', '--config', path]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^ {2}- identity_providers\[0\]\.issuer: must be an https:\/\/ URL/m);
    await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
  });

  it('refuses to start on a store sealed with another encryption key, naming secrets.encryption_key', async () => {
    const idp = await startIdp();
    const port = await freePort();
    const sqlite = (text: string) => text.replace('store: { type: memory }', `store: { type: sqlite, path: "${join(dir, 'keys.db')}" }`);
    const first = startCli(['serve', '--config', writeConfig('keys-1.yaml', sqlite(validConfig(idp.issuer, port)))]);
    await first.waitForOutput(/"msg":"gatehouse ready"/);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const { code, stderr } = await runCli(['serve', '--config', writeConfig('keys-2.yaml', sqlite(validConfig(idp.issuer, port)))]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^gatehouse: the stored signing keys cannot be opened with secrets\.encryption_key .*\[KEYS_UNREADABLE\]\n$/);
    expect(stderr).not.toMatch(/^\s+at /m);
  });

  it('exits 1 with a one-line reason when the port is taken', async () => {
    const idp = await startIdp();
    const port = Number(new URL(idp.url).port);
    const path = writeConfig('serve-busy.yaml', validConfig(idp.issuer, port));
    const { code, stderr } = await runCli(['serve', '--config', path]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^gatehouse: cannot listen: .*EADDRINUSE/);
    expect(stderr).not.toMatch(/^\s+at /m);
  });
});

describe('the built CLI (npm run build)', () => {
  const dist = join(REPO, 'dist');

  beforeAll(() => {
    const build = spawnSync('npm', ['run', 'build'], { cwd: REPO, env: cleanEnv(), encoding: 'utf8', timeout: 60_000 });
    expect(build.status, `${build.stdout}\n${build.stderr}`).toBe(0);
  }, 90_000);

  it('emits dist/cli.js with a node shebang, as package.json bin says', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(pkg.bin.gatehouse).toBe('dist/cli.js');
    expect(readFileSync(join(dist, 'cli.js'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it('rewrites relative imports to .js (rewriteRelativeImportExtensions): no .ts specifier is left', () => {
    const files: string[] = [];
    const walk = (at: string) => {
      for (const name of readdirSync(at)) {
        const path = join(at, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (name.endsWith('.js')) files.push(path);
      }
    };
    walk(dist);
    expect(files.length).toBeGreaterThan(20);
    const offenders = files.filter((file) => /(from\s*|import\s*\(\s*)['"]\.{1,2}\/[^'"]*\.ts['"]/.test(readFileSync(file, 'utf8')));
    expect(offenders.map((file) => relative(dist, file))).toEqual([]);
    const cli = readFileSync(join(dist, 'cli.js'), 'utf8');
    expect(cli).toContain(`from './config/config-error.js'`);
    expect(cli).toContain(`import('./app.js')`);
  });

  it('is ignored by git, so a build never shows up as a change', () => {
    const ignored = spawnSync('git', ['check-ignore', '-q', 'dist/cli.js'], { cwd: REPO });
    expect(ignored.status).toBe(0);
  });

  it('runs check-config on the pinned Node', async () => {
    const idp = await startIdp();
    const port = await freePort();
    const path = writeConfig('dist-good.yaml', validConfig(idp.issuer, port));
    const { code, stdout, stderr } = await runCli(['check-config', '--config', path], { script: join(dist, 'cli.js'), cwd: dir });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain(`Configuration ${path} is valid`);
    expect(existsSync(NODE)).toBe(true);
  });
});

describe('keys rotate', () => {
  it('adds new signing keys and keeps the retired ones published, and names its subcommand when it is missing', async () => {
    const sqlite = validConfig('https://idp.example.com', 9).replace('store: { type: memory }', `store: { type: sqlite, path: "${join(dir, 'rotate.db')}" }`);
    const path = writeConfig('rotate.yaml', sqlite);
    const first = await runCli(['keys', 'rotate', '--config', path]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const [, newEs, newRs, retired] = /^Signing keys rotated: new ([\w-]+), ([\w-]+); retired ([\w-]+, [\w-]+) \(published until \d{4}-\d\d-\d\dT[\d:.]+Z\)\.\n$/.exec(first.stdout) ?? [];
    expect(newEs).toBeTypeOf('string');
    // The second rotation retires what the first added; nothing has expired yet.
    const second = await runCli(['keys', 'rotate', '--config', path]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(`retired ${newEs}, ${newRs} (published until`);
    expect(second.stdout).not.toContain(retired!.split(', ')[0]!);

    const usage = await runCli(['keys', '--config', path]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^gatehouse: keys takes the subcommand rotate\n\nUsage:/);
  });
});
