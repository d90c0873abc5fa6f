import { describe, expect, it } from 'vitest';
import { expandEnv, expandString } from './expand.ts';

describe('expandString', () => {
  const env = { HOST: 'gw.example.com', PORT: '8443', EMPTY: '' };

  it('replaces ${VAR} with the variable', () => {
    expect(expandString('${HOST}', env)).toEqual({ value: 'gw.example.com', problems: [] });
  });

  it('expands references nested in longer text, several per string', () => {
    expect(expandString('https://${HOST}:${PORT}/mcp', env).value).toBe('https://gw.example.com:8443/mcp');
  });

  it('uses the default when the variable is unset or empty', () => {
    expect(expandString('${MISSING:-8080}', env).value).toBe('8080');
    expect(expandString('${EMPTY:-fallback}', env).value).toBe('fallback');
    expect(expandString('${PORT:-8080}', env).value).toBe('8443');
    expect(expandString('${MISSING:-}', env).value).toBe('');
  });

  it('keeps an empty variable empty when there is no default', () => {
    expect(expandString('[${EMPTY}]', env)).toEqual({ value: '[]', problems: [] });
  });

  it('turns $$ into $ and leaves other dollars alone', () => {
    expect(expandString('$${HOST} costs 5$ or $x', env).value).toBe('${HOST} costs 5$ or $x');
    expect(expandString('$2b$10$abc', env).value).toBe('$2b$10$abc');
  });

  it('does not expand a value a second time', () => {
    expect(expandString('${A}', { A: '${HOST}' }).value).toBe('${HOST}');
  });

  it('reports every unset variable and malformed reference', () => {
    expect(expandString('${A}-${B}', {}).problems).toEqual([
      'environment variable A is not set',
      'environment variable B is not set',
    ]);
    expect(expandString('${1BAD}', {}).problems[0]).toMatch(/not a valid reference/);
    expect(expandString('${A-x}', {}).problems[0]).toMatch(/not a valid reference/);
    expect(expandString('${OPEN', {}).problems[0]).toMatch(/without a closing/);
  });
});

describe('expandEnv', () => {
  it('expands strings at every depth and leaves other scalars and keys alone', () => {
    const { value, problems } = expandEnv(
      { '${KEY}': 'x', list: ['${A}', 3, true, null], nested: { deep: 'a-${A}' } },
      { A: 'one', KEY: 'nope' },
    );
    expect(problems).toEqual([]);
    expect(value).toEqual({ '${KEY}': 'x', list: ['one', 3, true, null], nested: { deep: 'a-one' } });
  });

  it('reports an unset variable at the key path where it appears, keeping the text', () => {
    const { value, problems } = expandEnv({ identity_providers: [{ client_secret: '${GOOGLE_CLIENT_SECRET}' }] }, {});
    expect(problems).toEqual([{ path: ['identity_providers', 0, 'client_secret'], message: 'environment variable GOOGLE_CLIENT_SECRET is not set' }]);
    expect(value).toEqual({ identity_providers: [{ client_secret: '${GOOGLE_CLIENT_SECRET}' }] });
  });

  it('does not mutate its input', () => {
    const input = { a: '${A}' };
    expandEnv(input, { A: 'x' });
    expect(input).toEqual({ a: '${A}' });
  });

  it('refuses a collection that contains itself', () => {
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    expect(expandEnv(loop, {}).problems).toEqual([{ path: ['self'], message: 'a YAML alias here refers to a collection that contains it' }]);
  });
});
