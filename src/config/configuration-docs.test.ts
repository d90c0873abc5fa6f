import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from './index.ts';
import { keyPaths, topLevelKeys } from './schema.ts';

const docs = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

/** The first ```yaml block after the given heading. */
function yamlAfter(heading: string): string {
  const start = docs.indexOf(`\n${heading}\n`);
  if (start === -1) throw new Error(`no heading ${heading}`);
  const block = /```yaml\n([\s\S]*?)\n```/.exec(docs.slice(start));
  if (!block?.[1]) throw new Error(`no yaml block after ${heading}`);
  return block[1];
}

const env = {
  GATEHOUSE_ENCRYPTION_KEY: Buffer.alloc(32, 5).toString('base64'),
  CORP_CLIENT_SECRET: 'corp-secret',
  GOOGLE_CLIENT_ID: 'google-id',
  GOOGLE_CLIENT_SECRET: 'google-secret',
  INTERNAL_AGENT_SECRET: 'agent-secret',
  GITHUB_CLIENT_SECRET: 'github-secret',
  ENTRA_CLIENT_SECRET: 'entra-secret',
  OKTA_CLIENT_SECRET: 'okta-secret',
  KEYCLOAK_CLIENT_SECRET: 'keycloak-secret',
};

/**
 * The store examples under "### Storage": one `store` per way of reaching a store, since one
 * file (the complete example) can show only one engine.
 */
function storeExamples(): string[] {
  const start = docs.indexOf('\n### Storage\n');
  const section = docs.slice(start, docs.indexOf('\n### ', start + 1));
  return [...section.matchAll(/```yaml\n([\s\S]*?)\n```/g)].map((block) => block[1] as string);
}

describe('docs/configuration.md', () => {
  it('describes every key path of the schema', () => {
    const paths = keyPaths();
    expect(paths.length).toBeGreaterThan(80);
    const missing = paths.filter((path) => !docs.includes(`\`${path}\``));
    expect(missing).toEqual([]);
  });

  it('documents no key the schema lacks', () => {
    const known = new Set(keyPaths());
    const tableKeys = [...docs.matchAll(/^\| `([a-z_.<>[\]]+)` \|/gm)].map((match) => match[1]);
    expect(tableKeys.length).toBeGreaterThan(80);
    expect(tableKeys.filter((path) => path !== undefined && !known.has(path))).toEqual([]);
  });

  it('lists the top-level keys that overrides may start with', () => {
    for (const key of topLevelKeys) expect(docs).toContain(`\`${key}\``);
  });

  it('has a minimal example that is valid', () => {
    const config = parseConfigText(yamlAfter('## A minimal file'), { env, source: 'minimal example' });
    expect(config.services.calculator?.path).toBe('/calculator/mcp');
  });

  it('has store examples that are valid, one per redis mode and one for postgres', () => {
    const minimal = yamlAfter('## A minimal file');
    const stores = storeExamples().map((example) => parseConfigText(`${minimal}\n${example}`, { env: { ...env, REDIS_PASSWORD: 'r', PGPASSWORD: 'p' }, source: 'store example' }).store);
    expect(stores.map((store) => [store.type, 'url' in store, 'sentinel' in store, 'cluster' in store])).toEqual([
      ['redis', true, false, false],
      ['redis', false, true, false],
      ['redis', false, false, true],
      ['postgres', true, false, false],
    ]);
  });

  it('has a complete example that is valid and sets every key but dev (store keys: in the store examples)', () => {
    const text = yamlAfter('## A complete example');
    const storeText = storeExamples().join('\n');
    const config = parseConfigText(text, { env, source: 'complete example' });
    expect(config.issuer).toBe('https://mcp.example.com/');
    expect(config.services.wiki?.forward.identity_jwt).toEqual({ header: 'X-Gatehouse-Identity', ttl_seconds: 60 });
    const unset = keyPaths()
      .filter((path) => path !== 'dev' && !path.startsWith('dev.'))
      .map((path) => [path, path.split(/\.|\[\]/).filter((segment) => segment !== '' && segment !== '<name>').pop() as string])
      .filter(([path, leaf]) => !new RegExp(`^\\s*(- )?${leaf!.replace('.', '\\.')}:`, 'm').test(path!.startsWith('store.') ? `${text}\n${storeText}` : text))
      .map(([, leaf]) => leaf);
    expect(unset).toEqual([]);
  });
});
