import { describe, expect, it } from 'vitest';
import { buildConfig, ConfigError, type Config } from './index.ts';

const github = { type: 'github', id: 'gh', client_id: 'Ov23liAbc', client_secret: 'secret' };

function build(changes: Record<string, unknown>): Config {
  return buildConfig({
    public_url: 'https://mcp.example.com',
    secrets: { encryption_key: Buffer.alloc(32, 7).toString('base64') },
    identity_providers: [github],
    access: { allow: { users: ['*'] } },
    services: { demo: { upstream: 'http://127.0.0.1:3001/mcp' } },
    ...changes,
  }, { env: {}, source: 'test' });
}

function messages(changes: Record<string, unknown>): string[] {
  try {
    build(changes);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((problem) => `${problem.path}: ${problem.message}`);
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('type: github', () => {
  it('takes client id and secret, with base_url, api_url and extra scopes optional', () => {
    expect(build({}).identity_providers).toEqual([{ ...github, scopes: [] }]);
    const ghes = build({ identity_providers: [{ ...github, name: 'GHE', base_url: 'https://ghe.example.com', api_url: 'https://ghe.example.com/api/v3', scopes: ['repo'] }] });
    expect(ghes.identity_providers[0]).toMatchObject({ base_url: 'https://ghe.example.com', api_url: 'https://ghe.example.com/api/v3', scopes: ['repo'] });
  });

  it('requires the client secret and refuses plain http off loopback', () => {
    expect(messages({ identity_providers: [{ ...github, client_secret: undefined, base_url: 'http://ghe.example.com' }] })).toEqual([
      'identity_providers[0].client_secret: is required',
      'identity_providers[0].base_url: must use https; plain http is allowed only on a loopback host (a local test identity provider)',
    ]);
    expect(build({ identity_providers: [{ ...github, base_url: 'http://127.0.0.1:9000' }] }).identity_providers[0]).toMatchObject({ base_url: 'http://127.0.0.1:9000' });
  });
});

describe('github_orgs and github_teams rules', () => {
  it('are lower-cased in allow, deny and service access', () => {
    const config = build({
      access: { allow: { github_orgs: ['Acme'] }, deny: { github_teams: ['Acme/Interns'] } },
      services: { demo: { upstream: 'http://127.0.0.1:3001/mcp', access: { allow: { github_teams: ['ACME/platform-team'] } } } },
    });
    expect(config.access.allow.github_orgs).toEqual(['acme']);
    expect(config.access.deny?.github_teams).toEqual(['acme/interns']);
    expect(config.services.demo?.access?.allow?.github_teams).toEqual(['acme/platform-team']);
  });

  it('count as naming someone in allow', () => {
    expect(build({ access: { allow: { github_teams: ['acme/platform'] } } }).access.allow.github_teams).toEqual(['acme/platform']);
  });

  it('refuses malformed org logins and team names', () => {
    expect(messages({ access: { allow: { github_orgs: ['acme/platform', '-acme'], github_teams: ['platform', 'acme/'] } } })).toEqual([
      'access.allow.github_orgs[0]: must be a GitHub organization login such as acme (letters, digits and -)',
      'access.allow.github_orgs[1]: must be a GitHub organization login such as acme (letters, digits and -)',
      'access.allow.github_teams[0]: must be a GitHub team as org/team-slug, such as acme/platform (the slug as in the team\'s URL)',
      'access.allow.github_teams[1]: must be a GitHub team as org/team-slug, such as acme/platform (the slug as in the team\'s URL)',
    ]);
  });

  it('need a github provider: without one they could never match', () => {
    const oidc = { type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'gatehouse' };
    expect(messages({
      identity_providers: [oidc],
      access: { allow: { users: ['*'] }, deny: { github_orgs: ['acme'] } },
      services: { demo: { upstream: 'http://127.0.0.1:3001/mcp', access: { allow: { github_teams: ['acme/x'] } } } },
    })).toEqual([
      'access.deny.github_orgs: matches only people who sign in with a GitHub identity provider, and none is configured: add one (type: github) or remove this rule',
      'services.demo.access.allow.github_teams: matches only people who sign in with a GitHub identity provider, and none is configured: add one (type: github) or remove this rule',
    ]);
  });
});
