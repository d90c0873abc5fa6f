/**
 * Configurations for the config module's tests: a minimal valid file and object, and helpers
 * that collect the problems a load reports.
 */
import { buildConfig, ConfigError, type Config, type ConfigProblem } from '../../src/config/index.ts';

export const key = Buffer.alloc(32, 1).toString('base64');

export const minimalYaml = `
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

/** A minimal valid configuration object. */
export function base(): Record<string, unknown> {
  return {
    public_url: 'https://mcp.example.com',
    secrets: { encryption_key: key },
    identity_providers: [{ type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'gatehouse' }],
    access: { allow: { domains: ['example.com'] } },
    services: { demo: { upstream: 'http://127.0.0.1:3001/mcp' } },
  };
}

/** `base()` with top-level keys replaced, validated with `env` as the environment (default none). */
export function build(changes: Record<string, unknown> = {}, env: Record<string, string> = {}): Config {
  return buildConfig({ ...base(), ...changes }, { env, source: 'test' });
}

/** The `path: message` lines of `base()` with these changes; none when it is valid. */
export function problemsWith(changes: Record<string, unknown>, env: Record<string, string> = {}): string[] {
  try {
    build(changes, env);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((problem) => `${problem.path}: ${problem.message}`);
    throw error;
  }
}

export function problemsOf(load: () => unknown): ConfigProblem[] {
  try {
    load();
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  throw new Error('expected a ConfigError');
}

/** `path: message` lines, without file positions. */
export function messages(load: () => unknown): string[] {
  return problemsOf(load).map((problem) => `${problem.path}: ${problem.message}`);
}
