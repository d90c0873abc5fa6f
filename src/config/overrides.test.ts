import { describe, expect, it } from 'vitest';
import { buildConfig, parseConfigText, type Config } from './index.ts';
import { parseFlowScalar, readOverrides } from './overrides.ts';
import { topLevelKeys } from './schema.ts';
import { base, key, messages } from '../../test/support/config-fixtures.ts';

function withEnv(env: Record<string, string>, raw: Record<string, unknown> = base()): Config {
  return buildConfig(raw, { env, source: 'test' });
}


describe('GATEHOUSE_* overrides', () => {
  it('set top-level and nested keys, with numbers parsed', () => {
    const config = withEnv({
      GATEHOUSE_PUBLIC_URL: 'https://gw.example.org',
      GATEHOUSE_LISTEN__PORT: '9000',
      GATEHOUSE_TOKENS__ACCESS_TTL_SECONDS: '900',
      GATEHOUSE_SERVICES__DEMO__UPSTREAM: 'http://10.0.0.5:3001/mcp',
    });
    expect(config.public_url).toBe('https://gw.example.org/');
    expect(config.issuer).toBe('https://gw.example.org/');
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(config.tokens.access_ttl_seconds).toBe(900);
    expect(config.services.demo?.upstream).toBe('http://10.0.0.5:3001/mcp');
  });

  it('address list items by index, and may add one at the end', () => {
    const config = withEnv({
      GATEHOUSE_IDENTITY_PROVIDERS__0__CLIENT_SECRET: 's3cret',
      GATEHOUSE_IDENTITY_PROVIDERS__1__TYPE: 'dev',
      GATEHOUSE_IDENTITY_PROVIDERS__1__ID: 'dev',
    });
    expect(config.identity_providers).toHaveLength(2);
    expect(config.identity_providers[0]).toMatchObject({ id: 'corp', client_secret: 's3cret' });
    expect(config.identity_providers[1]).toEqual({ type: 'dev', id: 'dev', name: 'Dev sign-in' });
  });

  it('refuse an index past the end of a list, or a name where a list needs an index', () => {
    expect(messages(() => withEnv({ GATEHOUSE_IDENTITY_PROVIDERS__3__ID: 'x', GATEHOUSE_CLIENTS__STATIC__FIRST__NAME: 'x' }))).toEqual([
      'identity_providers[3]: GATEHOUSE_IDENTITY_PROVIDERS__3__ID: index 3 is past the end of the list, which has 1 item (indexes count from 0)',
      'clients.static: GATEHOUSE_CLIENTS__STATIC__FIRST__NAME: this is a list, so "first" must be an index (0, 1, …)',
    ]);
  });

  it('parse values as YAML flow scalars where the key is not text', () => {
    const config = withEnv({
      GATEHOUSE_SERVICES__DEMO__DEFAULT: 'true',
      GATEHOUSE_SERVICES__DEMO__SCOPES: '[tools.read, tools.call]',
      GATEHOUSE_SERVICES__DEMO__FORWARD__IDENTITY_JWT: '{ ttl_seconds: 30 }',
      GATEHOUSE_SERVICES__DEMO__FORWARD__IDENTITY_HEADERS: 'false',
      GATEHOUSE_TRUST_PROXY: '2',
      GATEHOUSE_CLIENTS__REGISTRATION__ENABLED: 'false',
    });
    const demo = config.services.demo;
    expect(demo?.default).toBe(true);
    expect(demo?.scopes).toEqual(['tools.read', 'tools.call']);
    expect(demo?.forward.identity_jwt).toEqual({ header: 'X-Gatehouse-Identity', ttl_seconds: 30 });
    expect(demo?.forward.identity_headers).toBeNull();
    expect(config.trust_proxy).toBe(2);
    expect(config.clients.registration.enabled).toBe(false);
  });

  it('take text keys verbatim, so secrets and numeric ids survive', () => {
    const secret = 'a#b: c "d" *e &f';
    const config = withEnv({
      GATEHOUSE_IDENTITY_PROVIDERS__0__CLIENT_ID: '0123456',
      GATEHOUSE_IDENTITY_PROVIDERS__0__CLIENT_SECRET: secret,
      GATEHOUSE_SERVICES__DEMO__NAME: '8080',
      GATEHOUSE_SECRETS__ENCRYPTION_KEY: Buffer.alloc(32, 4).toString('base64'),
    });
    expect(config.identity_providers[0]).toMatchObject({ client_id: '0123456', client_secret: secret });
    expect(config.services.demo?.name).toBe('8080');
    expect(config.secrets.encryption_key).toBe(Buffer.alloc(32, 4).toString('base64'));
  });

  it('remove a key with null, so its default applies', () => {
    const raw = { ...base(), listen: { host: '127.0.0.1', port: 1234 } };
    expect(withEnv({ GATEHOUSE_LISTEN__PORT: 'null' }, raw).listen.port).toBe(8080);
  });

  it('create the mappings on their way', () => {
    const raw = base();
    delete raw.services;
    const config = withEnv({
      GATEHOUSE_SERVICES__WIKI__UPSTREAM: 'https://wiki.internal/mcp',
      GATEHOUSE_SERVICES__WIKI__ACCESS__ALLOW__GROUPS: '[eng]',
      GATEHOUSE_STORE__TYPE: 'memory',
    }, raw);
    expect(Object.keys(config.services)).toEqual(['wiki']);
    expect(config.services.wiki?.path).toBe('/wiki/mcp');
    expect(config.services.wiki?.access?.allow?.groups).toEqual(['eng']);
    expect(config.store).toEqual({ type: 'memory' });
  });

  it('apply shorter paths first, so a longer one refines them', () => {
    const config = withEnv({ GATEHOUSE_LISTEN__PORT: '9000', GATEHOUSE_LISTEN: '{ host: 0.0.0.0, port: 1 }' });
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 9000 });
  });

  it('ignore GATEHOUSE_CONFIG and any variable not naming a top-level key', () => {
    const config = withEnv({
      GATEHOUSE_CONFIG: '/etc/gatehouse.yaml',
      GATEHOUSE_ENCRYPTION_KEY: 'not a key',
      GATEHOUSE_ISSUER: 'https://evil.example',
      GATEHOUSE_PORT: '1',
      LISTEN__PORT: '2',
      gatehouse_listen__port: '3',
      XGATEHOUSE_LISTEN__PORT: '4',
    });
    expect(config.listen.port).toBe(8080);
    expect(config).not.toHaveProperty('config');
    expect(config.issuer).toBe('https://mcp.example.com/');
  });

  it('apply after ${VAR} expansion, replacing a value whose variable is unset', () => {
    const text = `
public_url: https://mcp.example.com
secrets: { encryption_key: "\${KEY}" }
identity_providers:
  - { type: oidc, id: corp, issuer: https://sso.example.com, client_id: x, client_secret: "\${CORP_SECRET}" }
access: { allow: { users: ["*"] } }
services: { demo: { upstream: "http://\${HOST:-127.0.0.1}:3001/mcp" } }
listen: { port: "\${PORT:-8080}" }
`;
    const config = parseConfigText(text, {
      env: { KEY: key, PORT: '7000', GATEHOUSE_LISTEN__PORT: '9000', GATEHOUSE_IDENTITY_PROVIDERS__0__CLIENT_SECRET: 'from-env' },
    });
    expect(config.listen.port).toBe(9000);
    expect(config.identity_providers[0]).toMatchObject({ client_secret: 'from-env' });
    expect(messages(() => parseConfigText(text, { env: { KEY: key } }))).toEqual([
      'identity_providers[0].client_secret: environment variable CORP_SECRET is not set',
    ]);
  });

  it('are named in the problems they cause', () => {
    expect(messages(() => withEnv({ GATEHOUSE_LISTEN__PORT: 'eighty', GATEHOUSE_SERVICES__DEMO__UPSTREEM: 'http://x', GATEHOUSE_LISTEN____HOST: 'x' }))).toEqual([
      ': GATEHOUSE_LISTEN____HOST: the name has an empty segment (three or more underscores in a row)',
      'listen.port: must be a whole number from 0 to 65535 (set by GATEHOUSE_LISTEN__PORT)',
      'services.demo.upstreem: unknown key; did you mean upstream? (set by GATEHOUSE_SERVICES__DEMO__UPSTREEM)',
    ]);
  });
});

describe('readOverrides', () => {
  it('lower-cases and splits names, and orders shorter paths first', () => {
    expect(readOverrides({ GATEHOUSE_LISTEN__PORT: '1', GATEHOUSE_LISTEN: '{}', GATEHOUSE_CONFIG: 'x', OTHER: 'y' }, topLevelKeys)).toEqual([
      { variable: 'GATEHOUSE_LISTEN', segments: ['listen'], text: '{}' },
      { variable: 'GATEHOUSE_LISTEN__PORT', segments: ['listen', 'port'], text: '1' },
    ]);
  });
});

describe('parseFlowScalar', () => {
  it('reads numbers, booleans, flow lists and mappings, and quoted strings', () => {
    expect(parseFlowScalar('8080')).toBe(8080);
    expect(parseFlowScalar('true')).toBe(true);
    expect(parseFlowScalar('[a, b]')).toEqual(['a', 'b']);
    expect(parseFlowScalar('{ a: 1 }')).toEqual({ a: 1 });
    expect(parseFlowScalar('"8080"')).toBe('8080');
    expect(parseFlowScalar('null')).toBeNull();
    expect(parseFlowScalar('~')).toBeNull();
  });

  it('keeps anything else as the text it was', () => {
    for (const text of ['hello world', 'a: b', '*alias', '&anchor x', '!tag x', '[unclosed', 'x # not a comment', '', '- item']) {
      expect(parseFlowScalar(text)).toBe(text);
    }
  });
});
