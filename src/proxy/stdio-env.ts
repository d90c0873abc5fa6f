/**
 * What a spawned MCP server gets to see: its argv, working directory and environment, with the
 * `{{…}}` placeholders of its service filled in from the user it starts for.
 *
 * The environment is built up from nothing: a short allow-list of the gateway's own variables
 * that programs need to run at all (PATH to find an interpreter, HOME, locale, time zone, temp
 * directory), then the service's `env`. Nothing else of the gateway's environment passes, so
 * its secrets (GATEHOUSE_ENCRYPTION_KEY, client secrets, database URLs) never reach a server.
 */
import { createHash } from 'node:crypto';
import { TEMPLATE_PATTERN, type TemplateName } from '../config/schema/stdio.ts';

/** Variables copied from the gateway's environment when set (cf. sudo's env_keep defaults). */
export const BASE_ENV_NAMES = ['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LANGUAGE', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TMPDIR', 'TERM'] as const;

export interface TemplateIdentity {
  accountId: string;
  subject?: string | undefined;
  provider: string;
  email?: string | undefined;
  name?: string | undefined;
  groups: readonly string[];
}

/** The value of every placeholder for one user (and their upstream token, when the service has one). */
export function templateValues(identity: TemplateIdentity | undefined, upstreamToken?: string): Record<TemplateName, string> {
  return {
    'user.id': identity?.accountId ?? '',
    'user.id_hash': identity ? createHash('sha256').update(identity.accountId).digest('hex').slice(0, 32) : '',
    'user.subject': identity?.subject ?? '',
    'user.provider': identity?.provider ?? '',
    'user.email': identity?.email ?? '',
    'user.name': identity?.name ?? '',
    'user.groups': identity?.groups.join(',') ?? '',
    upstream_token: upstreamToken ?? '',
  };
}

/** `value` with each `{{name}}` replaced; the schema has already refused unknown names. */
export function fillTemplate(value: string, values: Readonly<Record<string, string>>): string {
  return value.replace(TEMPLATE_PATTERN, (_whole, name: string) => values[name] ?? '');
}

export interface LaunchSpec {
  program: string;
  args: string[];
  cwd?: string | undefined;
  env: Record<string, string>;
}

/** The program, arguments, directory and environment for one process. */
export function launchSpec(
  service: { command: readonly string[]; env?: Readonly<Record<string, string>> | undefined; cwd?: string | undefined },
  values: Readonly<Record<string, string>>,
  parentEnv: NodeJS.ProcessEnv = process.env,
): LaunchSpec {
  const env: Record<string, string> = {};
  for (const name of BASE_ENV_NAMES) {
    const value = parentEnv[name];
    // Bash exports functions as `() {…}` values (Shellshock): never pass one on.
    if (value !== undefined && !value.startsWith('()')) env[name] = value;
  }
  for (const [name, value] of Object.entries(service.env ?? {})) env[name] = fillTemplate(value, values);
  const [program, ...args] = service.command;
  return {
    program: program as string,
    args: args.map((arg) => fillTemplate(arg, values)),
    cwd: service.cwd === undefined ? undefined : fillTemplate(service.cwd, values),
    env,
  };
}
