import { describe, expect, it } from 'vitest';
import { ConfigError } from '../config-error.ts';
import { buildConfig } from '../load.ts';

describe('services.<name>.audit configuration', () => {
  const base = {
    public_url: 'https://mcp.example.com',
    secrets: { encryption_key: Buffer.alloc(32, 1).toString('base64') },
    identity_providers: [{ type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'gatehouse' }],
    access: { allow: { domains: ['example.com'] } },
  };
  const build = (audit: unknown) => buildConfig({ ...base, services: { wiki: { upstream: 'http://127.0.0.1:3001/mcp', audit } } }, { env: {} });
  const problems = (audit: unknown): string[] => {
    try {
      build(audit);
      return [];
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      return error.problems.map((problem) => `${problem.path}: ${problem.message}`);
    }
  };

  it('keeps arguments out by default, and reads the text forms ${…} gives', () => {
    expect(build(undefined).services.wiki?.audit).toEqual({ tool_arguments: false, redact: [], max_argument_bytes: 4096 });
    expect(build({ tool_arguments: 'true', redact: ['ssn', 'connection.password'], max_argument_bytes: '1024' }).services.wiki?.audit)
      .toEqual({ tool_arguments: true, redact: ['ssn', 'connection.password'], max_argument_bytes: 1024 });
  });

  it('names each bad entry by its path', () => {
    expect(problems({ tool_arguments: 'yes', redact: ['ok', 'a..b', 'with space'], max_argument_bytes: 1_000_000, other: 1 })).toEqual([
      'services.wiki.audit.tool_arguments: must be true or false',
      'services.wiki.audit.redact[1]: must be an argument name such as api_key, or a dotted path such as connection.password',
      'services.wiki.audit.redact[2]: must be an argument name such as api_key, or a dotted path such as connection.password',
      'services.wiki.audit.max_argument_bytes: must be a whole number from 16 to 65536',
      'services.wiki.audit.other: unknown key; the keys here are: tool_arguments, redact, max_argument_bytes',
    ]);
  });
});
