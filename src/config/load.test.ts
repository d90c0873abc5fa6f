import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildConfig, ConfigError, loadConfigFile, parseConfigText } from './index.ts';

import { base, build, key, messages, minimalYaml, problemsOf } from '../../test/support/config-fixtures.ts';

describe('defaults', () => {
  it('fills every default into a minimal file', () => {
    const config = parseConfigText(minimalYaml, { env: {} });
    expect(config).toEqual({
      public_url: 'https://mcp.example.com/',
      issuer: 'https://mcp.example.com/',
      listen: { host: '127.0.0.1', port: 8080 },
      trust_proxy: false,
      store: { type: 'sqlite', path: './data/gatehouse.db' },
      secrets: { encryption_key: key, previous_encryption_keys: [] },
      tokens: { access_ttl_seconds: 3600, refresh_ttl_days: 30, refresh_grace_seconds: 60, code_ttl_seconds: 60 },
      identity_providers: [{
        type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'gatehouse',
        scopes: ['openid', 'email', 'profile'], groups_claim: 'groups', extra_authorize_params: {},
      }],
      access: { allow: { users: [], emails: [], domains: ['example.com'], groups: [], github_orgs: [], github_teams: [] } },
      services: {
        demo: {
          upstream: 'http://127.0.0.1:3001/mcp',
          path: '/demo/mcp',
          name: 'demo',
          scopes: [],
          default: false,
          forward: {
            identity_headers: {
              user_id: 'X-User-Id', email: 'X-User-Email', name: 'X-User-Name',
              groups: 'X-User-Groups', provider: 'X-User-Provider', client_id: 'X-Client-Id',
            },
            identity_jwt: null,
          },
          upstream_scopes: [],
          timeout_ms: 30000,
          circuit_breaker: { failures: 5, open_seconds: 10, max_open_seconds: 60 },
          max_body_bytes: 4194304,
          audit: { tool_arguments: false, redact: [], max_argument_bytes: 4096 },
          method_scopes: {},
          isolation: 'session',
          idle_timeout_seconds: 300,
          max_processes: 50,
          max_processes_per_user: 5,
        },
      },
      clients: { registration: { enabled: true }, cimd: { enabled: true, allow_loopback: false }, static: [] },
      forward_auth: { enabled: false, allowed_ips: ['127.0.0.1/32', '::1/128'] },
      rate_limits: {
        enabled: true,
        registration: { per_ip: { limit: 120, window_seconds: 60 }, per_client_metadata: { limit: 60, window_seconds: 60 }, global: { limit: 600, window_seconds: 60 } },
        authorize: { per_ip: { limit: 300, window_seconds: 60 }, per_client: { limit: 600, window_seconds: 60 } },
        token: { per_ip: { limit: 1200, window_seconds: 60 }, per_client: { limit: 600, window_seconds: 60 } },
      },
      metrics: { enabled: true, allowed_ips: ['127.0.0.1/32', '::1/128'] },
      cors: { allowed_origins: [] },
      reload: { watch: false },
      shutdown: { grace_seconds: 10 },
      tracing: { enabled: false, headers: {}, sample_ratio: 1, propagate_to_upstream: true },
      log: { level: 'info' },
    });
  });

  it('fills defaults of the dev provider, the memory store and static clients', () => {
    const config = build({
      identity_providers: [{ type: 'dev', id: 'dev' }],
      store: { type: 'memory' },
      clients: { static: [{ client_id: 'a', name: 'A', redirect_uris: ['http://127.0.0.1/cb'] }, { client_id: 'b', client_secret: 's', name: 'B', redirect_uris: ['cursor://x/cb'] }] },
      dev: {},
    });
    expect(config.identity_providers).toEqual([{ type: 'dev', id: 'dev', name: 'Dev sign-in' }]);
    expect(config.store).toEqual({ type: 'memory' });
    expect(config.clients.static.map((client) => client.token_endpoint_auth_method)).toEqual(['none', 'client_secret_post']);
    expect(config.dev).toEqual({ demo_port: 0 });
  });

  it('normalises forward switches: true to the default names, false to null', () => {
    const config = build({
      services: {
        a: { upstream: 'http://a', forward: { identity_headers: false, identity_jwt: true } },
        b: { upstream: 'http://b', forward: { identity_headers: { email: 'X-Mail' }, identity_jwt: { ttl_seconds: 30 } } },
      },
    });
    expect(config.services.a?.forward).toEqual({ identity_headers: null, identity_jwt: { header: 'X-Gatehouse-Identity', ttl_seconds: 60 } });
    expect(config.services.b?.forward.identity_headers?.email).toBe('X-Mail');
    expect(config.services.b?.forward.identity_headers?.user_id).toBe('X-User-Id');
    expect(config.services.b?.forward.identity_jwt).toEqual({ header: 'X-Gatehouse-Identity', ttl_seconds: 30 });
  });

  it('accepts upstream_token with upstream_scopes, and defaults both to off', () => {
    const config = build({
      services: {
        a: { upstream: 'http://a', forward: { upstream_token: 'X-Forwarded-Access-Token' }, upstream_scopes: ['https://www.googleapis.com/auth/drive.readonly'] },
        b: { upstream: 'http://b' },
      },
    });
    expect(config.services.a?.forward.upstream_token).toBe('X-Forwarded-Access-Token');
    expect(config.services.a?.upstream_scopes).toEqual(['https://www.googleapis.com/auth/drive.readonly']);
    expect(config.services.b?.forward.upstream_token).toBeUndefined();
    expect(config.services.b?.upstream_scopes).toEqual([]);
  });

  it('refuses upstream_scopes without upstream_token, and an upstream_token header another rule uses', () => {
    expect(messages(() => build({ services: { a: { upstream: 'http://a', upstream_scopes: ['drive'] } } }))).toEqual([
      'services.a.upstream_scopes: needs forward.upstream_token: the scopes are granted on the upstream token, which this service does not receive',
    ]);
    expect(messages(() => build({ services: { a: { upstream: 'http://a', forward: { upstream_token: 'x-user-email' } } } }))).toEqual([
      'services.a.forward.upstream_token: is the same header as forward.identity_headers.email',
    ]);
    expect(messages(() => build({ services: { a: { upstream: 'http://a', forward: { upstream_token: 'Cookie' }, upstream_scopes: ['two words'] } } }))).toEqual([
      'services.a.forward.upstream_token: is a header that HTTP or the gateway itself controls; choose another name',
      'services.a.upstream_scopes[0]: must be a scope name: printable characters without spaces, quotes or backslashes',
    ]);
  });

  it('lower-cases e-mail addresses and domains', () => {
    const config = build({ access: { allow: { emails: ['Ann@Example.COM', '*'], domains: ['Example.ORG'] } } });
    expect(config.access.allow.emails).toEqual(['ann@example.com', '*']);
    expect(config.access.allow.domains).toEqual(['example.org']);
  });
});

describe('the result', () => {
  it('is deeply frozen', () => {
    const config = parseConfigText(minimalYaml, { env: {} });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.listen)).toBe(true);
    expect(Object.isFrozen(config.services.demo?.forward.identity_headers)).toBe(true);
    expect(Object.isFrozen(config.identity_providers[0])).toBe(true);
    expect(Object.isFrozen(config.access.allow.domains)).toBe(true);
    expect(() => {
      (config.listen as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => (config.access.allow.domains as string[]).push('evil.example')).toThrow(TypeError);
  });

  it('does not share defaults between loads', () => {
    const first = build();
    const second = build();
    expect(first.access.allow.users).not.toBe(second.access.allow.users);
    expect(first.services.demo?.forward.identity_headers).not.toBe(second.services.demo?.forward.identity_headers);
  });

  it('leaves the object given to buildConfig untouched', () => {
    const raw = base();
    const before = structuredClone(raw);
    buildConfig(raw, { env: { GATEHOUSE_LISTEN__PORT: '9000' } });
    expect(raw).toEqual(before);
    expect(Object.isFrozen(raw)).toBe(false);
  });
});

describe('${VAR} expansion in a file', () => {
  it('coerces an expanded scalar where a number or boolean is expected', () => {
    const text = `${minimalYaml}
listen:
  port: \${PORT:-8080}
clients:
  registration: { enabled: "\${REGISTRATION:-true}" }
tokens:
  access_ttl_seconds: \${TTL}
`;
    const withDefaults = parseConfigText(text, { env: { TTL: '900' } });
    expect(withDefaults.listen.port).toBe(8080);
    expect(withDefaults.clients.registration.enabled).toBe(true);
    expect(withDefaults.tokens.access_ttl_seconds).toBe(900);
    const set = parseConfigText(text, { env: { PORT: '9000', REGISTRATION: 'false', TTL: '60' } });
    expect(set.listen.port).toBe(9000);
    expect(set.clients.registration.enabled).toBe(false);
  });

  it('keeps an expanded value a string where a string is expected', () => {
    const config = parseConfigText(minimalYaml.replace('client_id: gatehouse', 'client_id: ${CLIENT_ID}'), { env: { CLIENT_ID: '12345' } });
    expect((config.identity_providers[0] as { client_id: string }).client_id).toBe('12345');
  });

  it('expands references nested in a longer string', () => {
    const config = parseConfigText(minimalYaml.replace('http://127.0.0.1:3001/mcp', 'http://${UPSTREAM_HOST}:${UPSTREAM_PORT:-3001}/mcp'), { env: { UPSTREAM_HOST: 'mcp.internal' } });
    expect(config.services.demo?.upstream).toBe('http://mcp.internal:3001/mcp');
  });

  it('reports an unset variable at its key path, and nothing else about that value', () => {
    const text = minimalYaml.replace('client_id: gatehouse', 'client_id: gatehouse\n    client_secret: ${GOOGLE_CLIENT_SECRET}');
    const problems = problemsOf(() => parseConfigText(text, { env: {}, source: 'gatehouse.yaml' }));
    expect(problems).toEqual([{
      path: 'identity_providers[0].client_secret',
      message: 'environment variable GOOGLE_CLIENT_SECRET is not set',
      line: 10,
      column: 20,
    }]);
  });

  it('explains that references in flow collections need quotes', () => {
    const problems = problemsOf(() => parseConfigText('secrets: { encryption_key: ${KEY} }\n', { env: { KEY: key } }));
    expect(problems[0]?.message).toMatch(/must be quoted: "\$\{VAR\}"/);
    expect(parseConfigText(minimalYaml.replace(`encryption_key: ${key}`, 'encryption_key: "${KEY}"'), { env: { KEY: key } }).secrets.encryption_key).toBe(key);
  });
});

describe('ConfigError', () => {
  it('formats problems as a readable list, with positions, without a stack trace', () => {
    const text = `${minimalYaml}listen:\n  port: big\n`;
    let error: unknown;
    try {
      parseConfigText(text, { env: {}, source: '/etc/gatehouse.yaml' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const configError = error as ConfigError;
    expect(configError.code).toBe('CONFIG_INVALID');
    expect(configError.source).toBe('/etc/gatehouse.yaml');
    expect(configError.format()).toBe([
      'Invalid configuration in /etc/gatehouse.yaml:',
      '  - listen.port: must be a whole number from 0 to 65535 (line 17, column 9)',
    ].join('\n'));
    expect(configError.message).toBe(configError.format());
    expect(configError.format()).not.toMatch(/\bat .*:\d+:\d+/);
  });

  it('turns a YAML syntax error into a problem with its line and column', () => {
    const problems = problemsOf(() => parseConfigText('public_url: https://x\nlisten:\n  port: 1\n   host: x\n', { env: {} }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ path: '', line: 3, column: 9 });
    expect(problems[0]?.message).toMatch(/^YAML syntax error: /);
    const duplicate = problemsOf(() => parseConfigText('log: {}\nlog: {}\n', { env: {} }));
    expect(duplicate[0]).toMatchObject({ line: 2, column: 1 });
    expect(new ConfigError('f.yaml', duplicate).format()).toMatch(/^Invalid configuration in f\.yaml:\n {2}- line 2, column 1: YAML syntax error: /);
  });

  it('reports an empty file as the missing required keys, and a non-mapping as such', () => {
    expect(messages(() => parseConfigText('', { env: {} }))).toEqual([
      'public_url: is required',
      'secrets: is required',
      'identity_providers: is required',
      'access: is required: say who may sign in, for example access: { allow: { domains: [example.com] } }',
      'services: is required',
    ]);
    expect(messages(() => parseConfigText('- a\n- b\n', { env: {} }))).toEqual([
      ': the configuration must be a mapping of keys such as public_url, services and identity_providers',
    ]);
  });
});

describe('loadConfigFile', () => {
  const directory = mkdtempSync(join(tmpdir(), 'gatehouse-config-'));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));

  it('loads a file with the given environment', () => {
    const file = join(directory, 'gatehouse.yaml');
    writeFileSync(file, minimalYaml.replace(key, '${KEY}'));
    expect(loadConfigFile(file, { KEY: key }).secrets.encryption_key).toBe(key);
    expect(messages(() => loadConfigFile(file, {}))).toEqual(['secrets.encryption_key: environment variable KEY is not set']);
  });

  it('names the file when it cannot be read', () => {
    const file = join(directory, 'missing.yaml');
    let error: unknown;
    try {
      loadConfigFile(file, {});
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).format()).toBe(`Invalid configuration in ${file}:\n  - cannot read the file: no such file`);
  });
});
