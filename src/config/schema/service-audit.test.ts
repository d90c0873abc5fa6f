import { describe, expect, it } from 'vitest';
import { build, problemsWith } from '../../../test/support/config-fixtures.ts';

describe('services.<name>.audit configuration', () => {
  const withAudit = (audit: unknown) => ({ services: { wiki: { upstream: 'http://127.0.0.1:3001/mcp', audit } } });
  const problems = (audit: unknown): string[] => problemsWith(withAudit(audit));

  it('keeps arguments out by default, and reads the text forms ${…} gives', () => {
    expect(build(withAudit(undefined)).services.wiki?.audit).toEqual({ tool_arguments: false, redact: [], max_argument_bytes: 4096 });
    expect(build(withAudit({ tool_arguments: 'true', redact: ['ssn', 'connection.password'], max_argument_bytes: '1024' })).services.wiki?.audit)
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
