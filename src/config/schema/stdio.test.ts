import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../config-error.ts';
import { buildConfig, parseConfigText } from '../load.ts';

const key = Buffer.alloc(32, 1).toString('base64');

function config(service: Record<string, unknown>) {
  return buildConfig({
    public_url: 'https://mcp.example.com',
    secrets: { encryption_key: key },
    identity_providers: [{ type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'gatehouse' }],
    access: { allow: { domains: ['example.com'] } },
    services: { tools: service },
  }, { env: {}, source: 'test' });
}

function problems(service: Record<string, unknown>): string[] {
  try {
    config(service);
    return [];
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return error.problems.map((problem) => `${problem.path}: ${problem.message}`);
  }
}

describe('command services', () => {
  it('take a program with arguments, env and cwd, with process defaults', () => {
    const service = config({ command: ['npx', '-y', '@modelcontextprotocol/server-memory'], env: { PORT: 3000, DEBUG: true, NAME: '{{user.email}}' }, cwd: '/srv' }).services.tools;
    expect(service).toMatchObject({
      command: ['npx', '-y', '@modelcontextprotocol/server-memory'],
      env: { PORT: '3000', DEBUG: 'true', NAME: '{{user.email}}' },
      cwd: '/srv',
      isolation: 'session',
      idle_timeout_seconds: 300,
      max_processes: 50,
      max_processes_per_user: 5,
    });
    expect(service?.upstream).toBeUndefined();
  });

  it('keep {{…}} placeholders apart from the file\'s own ${VAR} expansion', () => {
    const text = [
      'public_url: https://mcp.example.com',
      `secrets: { encryption_key: ${key} }`,
      'identity_providers: [{ type: oidc, id: corp, issuer: https://sso.example.com, client_id: g }]',
      'access: { allow: { domains: [example.com] } }',
      'services:',
      '  files:',
      '    command: [mcp-server-filesystem, "${ROOT}/{{user.id_hash}}"]',
    ].join('\n');
    expect(parseConfigText(text, { env: { ROOT: '/srv/files' }, source: 'test' }).services.files?.command).toEqual(['mcp-server-filesystem', '/srv/files/{{user.id_hash}}']);
  });

  it('need exactly one of upstream and command', () => {
    expect(problems({})).toEqual(["services.tools.upstream: set upstream (the MCP server's URL) or command (a program the gateway starts)"]);
    expect(problems({ upstream: 'http://127.0.0.1:1/mcp', command: ['x'] })).toEqual(['services.tools.command: a service has either upstream or command, not both']);
    expect(problems({ command: [] })).toEqual(['services.tools.command: must name a program']);
    expect(problems({ command: 'npx server' })).toEqual(['services.tools.command: must be a list: the program, then its arguments']);
  });

  it('refuse process keys on an upstream service, and HTTP-only keys on a command service', () => {
    expect(problems({ upstream: 'http://127.0.0.1:1/mcp', env: { A: 'b' }, cwd: '/tmp' })).toEqual([
      'services.tools.env: applies only to a service with command',
      'services.tools.cwd: applies only to a service with command',
    ]);
    expect(problems({ command: ['x'], transport: 'sse', forward: { identity_jwt: true } })).toEqual([
      'services.tools.transport: a command service speaks stdio; transport is for upstream URLs',
      'services.tools.forward.identity_jwt: a command service gets no HTTP requests to carry it; pass identity in env with placeholders such as {{user.id}}',
    ]);
  });

  it('check placeholders: known names, the upstream token only when kept, no user in a shared process', () => {
    expect(problems({ command: ['x', '--user={{user.mail}}'] })).toEqual([
      'services.tools.command[1]: {{user.mail}} is not a placeholder; known: {{user.id}}, {{user.id_hash}}, {{user.subject}}, {{user.provider}}, {{user.email}}, {{user.name}}, {{user.groups}}, {{upstream_token}}',
    ]);
    expect(problems({ command: ['{{user.id}}'] })).toEqual(['services.tools.command[0]: the program cannot be a placeholder; placeholders go in its arguments, env and cwd']);
    expect(problems({ command: ['x'], env: { TOKEN: '{{upstream_token}}' } })).toEqual([
      "services.tools.env.TOKEN: {{upstream_token}} needs forward.upstream_token, which makes the gateway keep the user's identity-provider token",
    ]);
    expect(problems({ command: ['x'], env: { TOKEN: '{{ upstream_token }}' }, forward: { upstream_token: 'X-Upstream-Token' } })).toEqual([]);
    expect(problems({ command: ['x'], isolation: 'shared', cwd: '/srv/{{user.id_hash}}' })).toEqual([
      'services.tools.cwd: {{user.id_hash}} describes one user, but isolation: shared runs one process for everyone; use isolation: session or user',
    ]);
    expect(problems({ command: ['x'], isolation: 'user', cwd: '/srv/{{user.id_hash}}' })).toEqual([]);
  });

  it('check isolation and limits', () => {
    expect(problems({ command: ['x'], isolation: 'process', max_processes: 0, max_processes_per_user: 'many', idle_timeout_seconds: 0, env: { 'BAD-NAME': 'x' } })).toEqual([
      'services.tools.env.BAD-NAME: environment variable names are letters, digits and "_", not starting with a digit',
      'services.tools.isolation: must be session, user or shared',
      'services.tools.idle_timeout_seconds: must be a whole number from 1 to 604800',
      'services.tools.max_processes: must be a whole number from 1 to 10000',
      'services.tools.max_processes_per_user: must be a whole number from 1 to 1000',
    ]);
  });
});

describe('docs/services.md', () => {
  it('has stdio examples that are valid', () => {
    const docs = readFileSync(new URL('../../../docs/services.md', import.meta.url), 'utf8');
    const start = docs.indexOf('\n## stdio servers');
    const section = docs.slice(start, docs.indexOf('\n## ', start + 1));
    const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)\n```/g)].map((block) => block[1] as string);
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    const base = [
      'public_url: https://mcp.example.com',
      `secrets: { encryption_key: ${key} }`,
      'identity_providers: [{ type: oidc, id: corp, issuer: https://sso.example.com, client_id: g }]',
      'access: { allow: { domains: [example.com] } }',
    ].join('\n');
    const names = blocks.flatMap((block) => Object.keys(parseConfigText(`${base}\n${block}`, { env: {}, source: 'services.md' }).services));
    expect(names).toEqual(expect.arrayContaining(['everything', 'memory', 'files', 'drive']));
  });
});
