import { z } from 'zod';
import { integer, isRecord, text, wrongType } from './primitives.ts';

/*
 * Services the gateway starts as local processes (`services.<name>.command`): the program and
 * its arguments, environment and working directory, how processes are shared, and their limits.
 *
 * Values of `env`, the arguments after the program, and `cwd` may hold placeholders such as
 * `{{user.email}}`, filled in from the signed-in user when a process starts. Double braces,
 * because `${VAR}` is already the configuration file's own environment expansion (load.ts),
 * which runs on the whole file before the schema sees it.
 */

/** Every placeholder a command service may use, and what it becomes. */
export const TEMPLATE_NAMES = [
  'user.id', // the account id: <identity provider id>:<subject>
  'user.id_hash', // 32 hex characters of SHA-256 of the account id: safe in file names
  'user.subject', // the subject at the identity provider
  'user.provider', // the identity provider's id in this configuration
  'user.email',
  'user.name',
  'user.groups', // comma-separated
  'upstream_token', // the user's identity-provider access token (needs forward.upstream_token)
] as const;

export type TemplateName = (typeof TEMPLATE_NAMES)[number];

/** `{{ name }}`; spaces inside the braces are allowed. */
export const TEMPLATE_PATTERN = /\{\{\s*([A-Za-z0-9_.]+)\s*\}\}/g;

/** The placeholder names used in `value`, in order. */
export function templateNamesIn(value: string): string[] {
  return [...value.matchAll(TEMPLATE_PATTERN)].map((match) => match[1] as string);
}

export const ISOLATION_MODES = ['session', 'user', 'shared'] as const;

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'environment variable names are letters, digits and "_", not starting with a digit' });

/** YAML reads `PORT: 3000` as a number and `DEBUG: true` as a boolean; the environment wants text. */
const envValue = z.preprocess(
  (value) => (typeof value === 'number' || typeof value === 'boolean' ? String(value) : value),
  z.string({ error: 'must be text' }),
);

/** The keys a service has when the gateway runs it as a process (merged into the service schema). */
export const stdioKeys = {
  command: z.array(z.string(), { error: wrongType('must be a list: the program, then its arguments') })
    .min(1, { error: 'must name a program' })
    .superRefine((argv, ctx) => {
      if (argv[0] !== undefined && argv[0].trim() === '') ctx.addIssue({ code: 'custom', path: [0], message: 'the program must not be empty', input: argv[0] });
      if (argv[0] !== undefined && templateNamesIn(argv[0]).length > 0) {
        ctx.addIssue({ code: 'custom', path: [0], message: 'the program cannot be a placeholder; placeholders go in its arguments, env and cwd', input: argv[0] });
      }
    })
    .optional(),
  env: z.record(envName, envValue, { error: wrongType('must be a mapping of environment variable names to values') }).optional(),
  cwd: text.optional(),
  isolation: z.enum(ISOLATION_MODES, { error: 'must be session, user or shared' }).default('session'),
  idle_timeout_seconds: integer(1, 7 * 86400).default(300),
  max_processes: integer(1, 10_000).default(50),
  max_processes_per_user: integer(1, 1000).default(5),
};

interface StdioLike {
  upstream?: unknown;
  transport?: unknown;
  command?: readonly string[] | undefined;
  env?: Record<string, string> | undefined;
  cwd?: string | undefined;
  isolation: string;
  forward: { identity_jwt?: unknown; upstream_token?: string | undefined };
}

/**
 * Rules for a service's kind: exactly one of `upstream` and `command`; process-only keys only
 * with `command`; placeholders known, and never identity in a process shared by everyone.
 */
export function checkServiceKind(item: StdioLike, ctx: z.core.$RefinementCtx<unknown>): void {
  const hasUpstream = item.upstream !== undefined;
  const hasCommand = item.command !== undefined;
  if (!hasUpstream && !hasCommand) {
    ctx.addIssue({ code: 'custom', path: ['upstream'], message: 'set upstream (the MCP server\'s URL) or command (a program the gateway starts)', input: undefined });
    return;
  }
  if (hasUpstream && hasCommand) {
    ctx.addIssue({ code: 'custom', path: ['command'], message: 'a service has either upstream or command, not both', input: item.command });
    return;
  }
  if (hasUpstream) {
    for (const key of ['env', 'cwd'] as const) {
      if (item[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'applies only to a service with command', input: item[key] });
    }
    return;
  }
  if (item.transport !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['transport'], message: 'a command service speaks stdio; transport is for upstream URLs', input: item.transport });
  }
  if (isRecord(item.forward.identity_jwt)) {
    // The assertion travels in an HTTP header, and a process gets no HTTP requests.
    ctx.addIssue({ code: 'custom', path: ['forward', 'identity_jwt'], message: 'a command service gets no HTTP requests to carry it; pass identity in env with placeholders such as {{user.id}}', input: true });
  }
  const places: Array<[Array<string | number>, string]> = [
    ...(item.command ?? []).slice(1).map((arg, index): [Array<string | number>, string] => [['command', index + 1], arg]),
    ...Object.entries(item.env ?? {}).map(([name, value]): [Array<string | number>, string] => [['env', name], value]),
    ...(item.cwd !== undefined ? [[['cwd'], item.cwd] as [Array<string | number>, string]] : []),
  ];
  for (const [path, value] of places) {
    for (const name of templateNamesIn(value)) {
      if (!(TEMPLATE_NAMES as readonly string[]).includes(name)) {
        ctx.addIssue({ code: 'custom', path, message: `{{${name}}} is not a placeholder; known: ${TEMPLATE_NAMES.map((known) => `{{${known}}}`).join(', ')}`, input: value });
      } else if (name === 'upstream_token' && item.forward.upstream_token === undefined) {
        ctx.addIssue({ code: 'custom', path, message: '{{upstream_token}} needs forward.upstream_token, which makes the gateway keep the user\'s identity-provider token', input: value });
      } else if (item.isolation === 'shared' && (name.startsWith('user.') || name === 'upstream_token')) {
        // One process serves every user: whoever started it would lend it their identity.
        ctx.addIssue({ code: 'custom', path, message: `{{${name}}} describes one user, but isolation: shared runs one process for everyone; use isolation: session or user`, input: value });
      }
    }
  }
}
