import { describe, expect, it } from 'vitest';
import { fillTemplate, launchSpec, templateValues } from './stdio-env.ts';

const alice = { accountId: 'corp:1234', subject: '1234', provider: 'corp', email: 'alice@example.com', name: 'Alice', groups: ['eng', 'ops'] };

describe('launchSpec', () => {
  it('passes only the allow-listed base environment, then the service env with placeholders filled in', () => {
    const parent = {
      PATH: '/usr/bin', HOME: '/home/gatehouse', LANG: 'C.UTF-8', GATEHOUSE_ENCRYPTION_KEY: 'secret', DATABASE_URL: 'postgres://x', BASH_FUNC_x: '() { :; }', TZ: '() { evil; }',
    };
    const spec = launchSpec({
      command: ['mcp-server', '--user={{user.email}}', 'plain'],
      env: { GREETING: 'hi {{ user.name }} of {{user.groups}}', TOKEN: '{{upstream_token}}', PATH: '/opt/bin' },
      cwd: '/srv/{{user.id_hash}}',
    }, templateValues(alice, 'upstream-token'), parent);
    expect(spec).toEqual({
      program: 'mcp-server',
      args: ['--user=alice@example.com', 'plain'],
      cwd: `/srv/${templateValues(alice)['user.id_hash']}`,
      env: { PATH: '/opt/bin', HOME: '/home/gatehouse', LANG: 'C.UTF-8', GREETING: 'hi Alice of eng,ops', TOKEN: 'upstream-token' },
    });
  });

  it('fills values from the identity, with empty text for what is unknown', () => {
    const values = templateValues({ accountId: 'gh:9', provider: 'gh', groups: [] });
    expect(values).toEqual({
      'user.id': 'gh:9', 'user.id_hash': expect.stringMatching(/^[0-9a-f]{32}$/), 'user.subject': '', 'user.provider': 'gh',
      'user.email': '', 'user.name': '', 'user.groups': '', upstream_token: '',
    });
    expect(values['user.id_hash']).not.toBe(templateValues(alice)['user.id_hash']);
    expect(fillTemplate('{{user.email}}|{{user.id}}|{{ not closed', values)).toBe('|gh:9|{{ not closed');
  });
});
