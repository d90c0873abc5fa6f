/**
 * Validation of the configuration: every problem reported at once, by key path, with a reason.
 */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from './index.ts';
import { base, build, key, messages, minimalYaml, problemsOf } from '../../test/support/config-fixtures.ts';

describe('validation', () => {
  it('names unknown keys by path, with a suggestion', () => {
    expect(messages(() => build({ services: { demo: { upstreem: 'http://x' } } }))).toEqual([
      'services.demo.upstreem: unknown key; did you mean upstream?',
      "services.demo.upstream: set upstream (the MCP server's URL) or command (a program the gateway starts)",
    ]);
    expect(messages(() => build({ listen: { host: '127.0.0.1', prot: 1 }, issuer: 'https://x' }))).toEqual([
      'listen.prot: unknown key; did you mean port?',
      'issuer: unknown key; the keys here are: public_url, listen, trust_proxy, store, secrets, tokens, identity_providers, access, services, clients, forward_auth, metrics, cors, reload, rate_limits, shutdown, tracing, log, dev',
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
