import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildConfig, ConfigError, loadConfigFile, parseConfigText, type Config, type ConfigProblem } from './index.ts';

const key = Buffer.alloc(32, 1).toString('base64');

const minimalYaml = `
public_url: https://mcp.example.com
secrets:
  encryption_key: ${key}
identity_providers:
  - type: oidc
    id: corp
    issuer: https://sso.example.com
    client_id: gatehouse
access:
  allow:
    domains: [example.com]
services:
  demo:
    upstream: http://127.0.0.1:3001/mcp
`;

function base(): Record<string, unknown> {
  return {
    public_url: 'https://mcp.example.com',
    secrets: { encryption_key: key },
    identity_providers: [{ type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'gatehouse' }],
    access: { allow: { domains: ['example.com'] } },
    services: { demo: { upstream: 'http://127.0.0.1:3001/mcp' } },
  };
}

/** `base()` with top-level keys replaced, validated without any environment. */
function build(changes: Record<string, unknown> = {}): Config {
  return buildConfig({ ...base(), ...changes }, { env: {}, source: 'test' });
}

function problemsOf(load: () => unknown): ConfigProblem[] {
  try {
    load();
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  throw new Error('expected a ConfigError');
}

/** `path: message` lines, without file positions. */
function messages(load: () => unknown): string[] {
  return problemsOf(load).map((problem) => `${problem.path}: ${problem.message}`);
}

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
          max_body_bytes: 4194304,
          method_scopes: {},
          isolation: 'session',
          idle_timeout_seconds: 300,
          max_processes: 50,
          max_processes_per_user: 5,
        },
      },
      clients: { registration: { enabled: true }, cimd: { enabled: true, allow_loopback: false }, static: [] },
      forward_auth: { enabled: false, allowed_ips: ['127.0.0.1/32', '::1/128'] },
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

describe('validation', () => {
  it('names unknown keys by path, with a suggestion', () => {
    expect(messages(() => build({ services: { demo: { upstreem: 'http://x' } } }))).toEqual([
      'services.demo.upstreem: unknown key; did you mean upstream?',
      "services.demo.upstream: set upstream (the MCP server's URL) or command (a program the gateway starts)",
    ]);
    expect(messages(() => build({ listen: { host: '127.0.0.1', prot: 1 }, issuer: 'https://x' }))).toEqual([
      'listen.prot: unknown key; did you mean port?',
      'issuer: unknown key; the keys here are: public_url, listen, trust_proxy, store, secrets, tokens, identity_providers, access, services, clients, forward_auth, log, dev',
    ]);
    expect(messages(() => build({ identity_providers: [{ type: 'dev', id: 'dev', issuer: 'https://x' }] }))).toEqual([
      'identity_providers[0].issuer: unknown key; the keys here are: type, id, name',
    ]);
  });

  it('reports values of the wrong type', () => {
    expect(messages(() => build({
      listen: { port: 'eighty' },
      trust_proxy: { yes: 1 },
      access: { allow: { domains: 'example.com' } },
      identity_providers: [{ type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 1234 }],
    }))).toEqual([
      'listen.port: must be a whole number from 0 to 65535',
      'trust_proxy: must be true, false, a number of proxy hops, or a list of proxy addresses or CIDR ranges',
      'identity_providers[0].client_id: expected a string, got a number; put it in quotes',
      'access.allow.domains: expected a list, got a string',
    ]);
  });

  it('refuses malformed URLs', () => {
    expect(messages(() => build({
      services: { demo: { upstream: 'not a url' }, ftp: { upstream: 'ftp://files.example.com' } },
      identity_providers: [{ type: 'oidc', id: 'corp', issuer: 'sso.example.com', client_id: 'x', icon: 'javascript:alert(1)' }],
    }))).toEqual([
      'identity_providers[0].icon: must be an https:// or data: URL',
      'identity_providers[0].issuer: must be a URL such as https://accounts.example.com',
      'services.demo.upstream: must be a URL such as http://127.0.0.1:3001/mcp',
      'services.ftp.upstream: must be an http:// or https:// URL (ws:// or wss:// for a WebSocket server)',
    ]);
  });

  describe('public_url', () => {
    it('is normalised to a lower-case origin with a trailing slash, and is the issuer', () => {
      const config = build({ public_url: 'HTTPS://MCP.Example.COM:443' });
      expect(config.public_url).toBe('https://mcp.example.com/');
      expect(config.issuer).toBe(config.public_url);
      expect(build({ public_url: 'https://mcp.example.com:8443/' }).issuer).toBe('https://mcp.example.com:8443/');
    });

    it('refuses a path, a query or a fragment', () => {
      for (const url of ['https://mcp.example.com/gatehouse', 'https://mcp.example.com/?a=1', 'https://mcp.example.com/#x', 'https://mcp.example.com?']) {
        expect(messages(() => build({ public_url: url }))).toEqual([
          'public_url: must be an origin only, such as https://mcp.example.com, without a path, query or fragment: the gateway serves its endpoints at the root',
        ]);
      }
    });

    it('refuses http except on a loopback host', () => {
      expect(messages(() => build({ public_url: 'http://mcp.example.com' }))).toEqual([
        'public_url: must use https; plain http is allowed only on a loopback host (localhost, 127.0.0.1, ::1)',
      ]);
      expect(messages(() => build({ public_url: 'http://10.0.0.1:8080' }))).toHaveLength(1);
      expect(build({ public_url: 'http://127.0.0.2:8080' }).issuer).toBe('http://127.0.0.2:8080/');
      expect(build({ public_url: 'http://LOCALHOST' }).issuer).toBe('http://localhost/');
      expect(build({ public_url: 'http://[::1]:9000' }).issuer).toBe('http://[::1]:9000/');
    });

    it('refuses credentials and other schemes', () => {
      expect(messages(() => build({ public_url: 'https://user:pw@mcp.example.com' }))).toEqual(['public_url: must not contain a user name or password']);
      expect(messages(() => build({ public_url: 'wss://mcp.example.com' }))).toEqual(['public_url: must be an https:// URL']);
    });
  });

  it('accepts an oidc issuer on https, or on http only on loopback', () => {
    const provider = (issuer: string) => [{ type: 'oidc', id: 'corp', issuer, client_id: 'x' }];
    expect((build({ identity_providers: provider('http://127.0.0.1:9000/realms/test') }).identity_providers[0] as { issuer: string }).issuer).toBe('http://127.0.0.1:9000/realms/test');
    expect(messages(() => build({ identity_providers: provider('http://sso.example.com') }))).toEqual([
      'identity_providers[0].issuer: must use https; plain http is allowed only on a loopback host (a local test identity provider)',
    ]);
  });

  it('refuses the dev provider when listening on a non-loopback address', () => {
    const devOn = (host: string) => () => build({ listen: { host }, identity_providers: [{ type: 'dev', id: 'dev' }] });
    expect(messages(devOn('0.0.0.0'))).toEqual([
      'identity_providers[0].type: the dev provider signs anyone in without a password and refuses to run on a non-loopback address (listen.host is 0.0.0.0); use a real identity provider, or listen on 127.0.0.1',
    ]);
    expect(messages(devOn('::'))).toHaveLength(1);
    expect(messages(devOn('192.168.1.10'))).toHaveLength(1);
    for (const host of ['127.0.0.1', '::1', 'localhost']) expect(devOn(host)().identity_providers[0]?.type).toBe('dev');
  });

  it('refuses cimd.allow_loopback when listening on a non-loopback address', () => {
    expect(messages(() => build({ listen: { host: '0.0.0.0' }, clients: { cimd: { allow_loopback: true } } }))).toEqual([
      'clients.cimd.allow_loopback: may be true only when listen.host is a loopback address (it is 0.0.0.0): fetching client metadata from loopback is for local development',
    ]);
  });

  it('refuses duplicate provider ids at the duplicate', () => {
    expect(messages(() => build({
      identity_providers: [
        { type: 'dev', id: 'one' },
        { type: 'dev', id: 'two' },
        { type: 'oidc', id: 'one', issuer: 'https://sso.example.com', client_id: 'x' },
      ],
    }))).toEqual(['identity_providers[2].id: id "one" is already used by item [0]']);
  });

  it('requires at least one provider and a known provider type', () => {
    expect(messages(() => build({ identity_providers: [] }))).toEqual(['identity_providers: list at least one identity provider']);
    expect(messages(() => build({ identity_providers: [{ type: 'saml', id: 'x' }, { id: 'y' }] }))).toEqual([
      'identity_providers[0].type: must be one of: oidc, dev, github, google, microsoft, okta, auth0, keycloak',
      'identity_providers[1].type: is required: one of oidc, dev, github, google, microsoft, okta, auth0, keycloak',
    ]);
  });

  it('refuses authorize parameters the gateway sets itself, and requires openid', () => {
    expect(messages(() => build({
      identity_providers: [{ type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'x', scopes: ['email'], extra_authorize_params: { nonce: 'fixed', prompt: 'login', max_age: 0 } }],
    }))).toEqual([
      'identity_providers[0].scopes: must include openid: the gateway signs users in with OpenID Connect',
      'identity_providers[0].extra_authorize_params.nonce: is set by the gateway on every request and cannot be overridden',
    ]);
  });

  describe('service paths', () => {
    it('refuses two services on one path, or one under the other', () => {
      expect(messages(() => build({
        services: {
          a: { upstream: 'http://a', path: '/tools/mcp' },
          b: { upstream: 'http://b', path: '/tools/mcp' },
          c: { upstream: 'http://c', path: '/tools/mcp/extra' },
          tools: { upstream: 'http://d' },
        },
      }))).toEqual([
        'services.b.path: /tools/mcp collides with services.a.path (/tools/mcp)',
        'services.c.path: /tools/mcp/extra collides with services.a.path (/tools/mcp)',
        'services.tools.path: the default path /tools/mcp collides with services.a.path (/tools/mcp)',
      ]);
    });

    it('refuses the gateway\'s own paths, default paths included', () => {
      expect(messages(() => build({
        services: {
          a: { upstream: 'http://a', path: '/token' },
          b: { upstream: 'http://b', path: '/.well-known/mcp' },
          health: { upstream: 'http://c' },
          ok: { upstream: 'http://d', path: '/tokens/mcp' },
        },
      }))).toEqual([
        'services.a.path: /token is the gateway\'s own /token endpoint; choose another path',
        'services.b.path: /.well-known/mcp is the gateway\'s own /.well-known endpoint; choose another path',
        'services.health.path: the default path /health/mcp is under the gateway\'s own /health endpoint; set another path',
      ]);
    });

    it('refuses malformed paths', () => {
      expect(messages(() => build({
        services: {
          a: { upstream: 'http://a', path: 'a/mcp' },
          b: { upstream: 'http://b', path: '/b/mcp/' },
          c: { upstream: 'http://c', path: '/c/mcp?x=1' },
          d: { upstream: 'http://d', path: '/d/../mcp' },
          e: { upstream: 'http://e', path: '/' },
        },
      }))).toEqual([
        'services.a.path: must start with /',
        'services.b.path: must not end with / (the gateway accepts both forms of the one path)',
        'services.c.path: must be a path only, without a query or fragment',
        'services.d.path: must be a plain URL path such as /tools/mcp (no empty, "." or ".." segments, no spaces)',
        'services.e.path: must not end with / (the gateway accepts both forms of the one path)',
      ]);
    });
  });

  it('allows at most one default service', () => {
    expect(messages(() => build({
      services: { a: { upstream: 'http://a', default: true }, b: { upstream: 'http://b', default: 'true' }, c: { upstream: 'http://c', default: true } },
    }))).toEqual([
      'services.b.default: only one service can be the default, and services.a already is',
      'services.c.default: only one service can be the default, and services.a already is',
    ]);
  });

  it('checks service names, scopes and header names', () => {
    expect(messages(() => build({
      services: {
        Demo: { upstream: 'http://a' },
        ok: {
          upstream: 'http://b',
          scopes: ['tools.read', 'offline_access', 'two words'],
          forward: { identity_headers: { email: 'X-User-Id', name: 'Bad Header' }, identity_jwt: { header: 'Host' } },
        },
      },
    }))).toEqual([
      'services.Demo: service names must be lower-case letters, digits, "-" and "_", starting with a letter or digit',
      'services.ok.scopes[2]: must be a scope name: printable characters without spaces, quotes or backslashes',
      'services.ok.scopes[1]: offline_access is not a service scope: the gateway issues refresh tokens without it',
      'services.ok.forward.identity_headers.name: must be an HTTP header name such as X-User-Id',
      'services.ok.forward.identity_jwt.header: is a header that HTTP or the gateway itself controls; choose another name',
      'services.ok.forward.identity_headers.email: is the same header as forward.identity_headers.user_id',
    ]);
    expect(messages(() => build({ services: {} }))).toEqual(['services: list at least one service']);
  });

  it('requires allow to name someone', () => {
    const nobody = 'access.allow: lists nobody, so no one could sign in: list who may under users, emails, domains or groups, or use users: ["*"] for anyone who can sign in at the identity provider';
    expect(messages(() => build({ access: { allow: {} } }))).toEqual([nobody]);
    expect(messages(() => build({ access: { allow: { users: [], groups: [] }, deny: { emails: ['x@example.com'] } } }))).toEqual([nobody]);
    expect(messages(() => build({ access: {} }))).toEqual([
      'access.allow: is required: list who may sign in under users, emails, domains or groups, or use users: ["*"] for anyone who can sign in at the identity provider',
    ]);
    expect(messages(() => build({ services: { demo: { upstream: 'http://a', access: { allow: {} } } } }))).toEqual([`services.demo.${nobody}`]);
    expect(build({ services: { demo: { upstream: 'http://a', access: { deny: { groups: ['interns'] } } } } }).services.demo?.access).toEqual({
      deny: { users: [], emails: [], domains: [], groups: ['interns'], github_orgs: [], github_teams: [] },
    });
  });

  it('checks e-mail addresses and domains', () => {
    expect(messages(() => build({ access: { allow: { emails: ['not-an-email'], domains: ['@example.com', '*'] } } }))).toEqual([
      'access.allow.emails[0]: must be an e-mail address, or "*" for anyone',
      'access.allow.domains[0]: must be a domain such as example.com (no @, no wildcard; for anyone, use users: ["*"])',
      'access.allow.domains[1]: must be a domain such as example.com (no @, no wildcard; for anyone, use users: ["*"])',
    ]);
  });

  it('checks static clients', () => {
    expect(messages(() => build({
      clients: {
        static: [
          { client_id: 'a', name: 'A', redirect_uris: [] },
          { client_id: 'a', client_secret: 's', name: 'B', redirect_uris: ['https://b.example/cb'], token_endpoint_auth_method: 'none' },
          { client_id: 'https://c.example/client.json', name: 'C', redirect_uris: ['https://c.example/cb#x'], token_endpoint_auth_method: 'client_secret_basic' },
        ],
      },
    }))).toEqual([
      'clients.static[0].redirect_uris: list at least one redirect URI',
      'clients.static[1].token_endpoint_auth_method: is "none" but client_secret is set: remove the secret, or use client_secret_post or client_secret_basic',
      'clients.static[2].client_id: must not be a URL: URL client IDs are client ID metadata documents (clients.cimd)',
      'clients.static[2].redirect_uris[0]: must not have a fragment',
      'clients.static[2].token_endpoint_auth_method: is "client_secret_basic", which needs a client_secret',
      'clients.static[1].client_id: client_id "a" is already used by item [0]',
    ]);
  });

  it('explains a bad encryption key without repeating it', () => {
    for (const bad of ['c2hvcnQ=', 'not base64 at all!', Buffer.alloc(64, 2).toString('base64')]) {
      const problems = messages(() => build({ secrets: { encryption_key: bad } }));
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^secrets\.encryption_key: must be 32 random bytes in base64 or base64url.*Make one with: openssl rand -base64 32$/);
      expect(problems[0]).not.toContain(bad);
    }
    expect(messages(() => build({ secrets: { encryption_key: 'c2hvcnQ=' } }))[0]).toContain('decodes to 5 bytes');
    const urlSafe = Buffer.alloc(32, 0xfb).toString('base64url');
    expect(build({ secrets: { encryption_key: urlSafe, previous_encryption_keys: [key] } }).secrets.previous_encryption_keys).toEqual([key]);
    expect(messages(() => build({ secrets: { encryption_key: key, previous_encryption_keys: ['abc'] } }))[0]).toMatch(/^secrets\.previous_encryption_keys\[0\]: must be 32 random bytes/);
  });

  it('checks ranges, enums and the store type', () => {
    expect(messages(() => build({
      tokens: { access_ttl_seconds: 59, refresh_ttl_days: 366, refresh_grace_seconds: 1.5, code_ttl_seconds: '5' },
      log: { level: 'loud' },
      store: { type: 'mongodb' },
    }))).toEqual([
      'store.type: must be one of: memory, sqlite, redis, postgres',
      'tokens.access_ttl_seconds: must be a whole number from 60 to 86400',
      'tokens.refresh_ttl_days: must be a whole number from 1 to 365',
      'tokens.refresh_grace_seconds: must be a whole number from 0 to 600',
      'tokens.code_ttl_seconds: must be a whole number from 10 to 600',
      'log.level: must be one of: fatal, error, warn, info, debug, trace, silent',
    ]);
    expect(build({ log: { level: 'DEBUG' } }).log.level).toBe('debug');
    expect(build({ listen: { port: 0 } }).listen.port).toBe(0);
  });

  it('checks the listen host', () => {
    for (const host of ['0.0.0.0', '::', '::1', 'localhost', 'gateway.internal']) expect(build({ listen: { host } }).listen.host).toBe(host);
    for (const host of ['http://0.0.0.0', '0.0.0.0:8080', '[::1]', '']) {
      expect(messages(() => build({ listen: { host } }))).toEqual([
        'listen.host: must be a host name or IP address, without scheme, port or brackets (e.g. 0.0.0.0, ::, 127.0.0.1)',
      ]);
    }
  });

  it('supports YAML anchors and merge keys', () => {
    const config = parseConfigText(`${minimalYaml}  wiki:
    <<: &internal
      forward: { identity_jwt: true }
      timeout_ms: 5000
    upstream: http://127.0.0.1:3002/mcp
`, { env: {} });
    expect(config.services.wiki?.timeout_ms).toBe(5000);
    expect(config.services.wiki?.forward.identity_jwt).toEqual({ header: 'X-Gatehouse-Identity', ttl_seconds: 60 });
  });

  it('accepts every form of trust_proxy', () => {
    expect(build({ trust_proxy: true }).trust_proxy).toBe(true);
    expect(build({ trust_proxy: 2 }).trust_proxy).toBe(2);
    expect(build({ trust_proxy: ['10.0.0.0/8'] }).trust_proxy).toEqual(['10.0.0.0/8']);
    expect(build({ trust_proxy: '10.0.0.0/8, 127.0.0.1' }).trust_proxy).toEqual(['10.0.0.0/8', '127.0.0.1']);
    expect(build({ trust_proxy: 'false' }).trust_proxy).toBe(false);
    expect(build({ trust_proxy: '1' }).trust_proxy).toBe(1);
  });

  it('reports every problem at once', () => {
    const text = `
public_url: http://mcp.example.com/base
listen: { host: 0.0.0.0, port: 70000 }
secrets: { encryption_key: short }
tokens: { access_ttl_seconds: 10, refreh_ttl_days: 5 }
identity_providers:
  - { type: dev, id: dev }
  - { type: oidc, id: dev, issuer: "ftp://sso", client_id: x, client_secret: "\${CORP_SECRET}" }
access: { allow: {} }
services:
  token: { upstream: http://a }
  b: { upstream: "not a url", path: /x/mcp, default: true }
  c: { upstream: http://c, path: /x/mcp, default: true }
colour: blue
`;
    const problems = problemsOf(() => parseConfigText(text, { env: {}, source: 'bad.yaml' }));
    expect(problems.map((problem) => problem.path)).toEqual([
      'identity_providers[1].client_secret',
      'public_url',
      'listen.port',
      'secrets.encryption_key',
      'tokens.access_ttl_seconds',
      'tokens.refreh_ttl_days',
      'identity_providers[1].issuer',
      'identity_providers[1].id',
      'access.allow',
      'services.b.upstream',
      'services.token.path',
      'services.c.path',
      'services.c.default',
      'colour',
      'identity_providers[0].type',
    ]);
    expect(problems).toHaveLength(15);
    expect(problems.every((problem) => problem.line !== undefined)).toBe(true);
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
