import { z } from 'zod';
import { always, isRecord, list, text } from './primitives.ts';

/*
 * Access rules: who may sign in (the top-level `access`) and who may use one service
 * (`services.<name>.access`).
 */

// ---------------------------------------------------------------------------------------------
// Who a rule names

const email = z.string()
  .refine((value) => value === '*' || /^[^@\s]+@[^@\s]+$/.test(value), {
    error: 'must be an e-mail address, or "*" for anyone',
  })
  .transform((value) => value.toLowerCase());

const domain = z.string()
  .refine((value) => /^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(value.toLowerCase()), {
    error: 'must be a domain such as example.com (no @, no wildcard; for anyone, use users: ["*"])',
  })
  .transform((value) => value.toLowerCase());

/** A GitHub organization login: letters, digits and single hyphens; case-insensitive, so lower-cased. */
const githubOrg = z.string()
  .regex(/^[A-Za-z0-9](-?[A-Za-z0-9])*$/, { error: 'must be a GitHub organization login such as acme (letters, digits and -)' })
  .transform((value) => value.toLowerCase());

/** A GitHub team as `org/team-slug` (the slug as in the team's URL), lower-cased. */
const githubTeam = z.string()
  .regex(/^[A-Za-z0-9](-?[A-Za-z0-9])*\/[A-Za-z0-9_.-]+$/, { error: 'must be a GitHub team as org/team-slug, such as acme/platform (the slug as in the team\'s URL)' })
  .transform((value) => value.toLowerCase());

// ---------------------------------------------------------------------------------------------
// Access rules

const rulesShape = {
  users: list(text),
  emails: list(email),
  domains: list(domain),
  groups: list(text),
  github_orgs: list(githubOrg),
  github_teams: list(githubTeam),
};

const nobodyAllowed =
  'lists nobody, so no one could sign in: list who may under users, emails, domains or groups, ' +
  'or use users: ["*"] for anyone who can sign in at the identity provider';

/** Whether every list is empty; undefined when a list is malformed (reported on its own). */
function namesNobody(rules: Record<string, unknown>): boolean | undefined {
  const lists = Object.keys(rulesShape).map((key) => rules[key] ?? []);
  if (!lists.every(Array.isArray)) return undefined;
  return lists.every((list) => list.length === 0);
}

/** `allow`, when present, must name someone: an empty allow list is almost certainly a mistake. */
function checkAllow(access: unknown, ctx: z.core.$RefinementCtx<unknown>): void {
  if (isRecord(access) && isRecord(access.allow) && namesNobody(access.allow) === true) {
    ctx.addIssue({ code: 'custom', path: ['allow'], message: nobodyAllowed, input: access.allow });
  }
}

const accessRules = z.strictObject(rulesShape);

export const access = z.strictObject(
  {
    allow: z.strictObject(rulesShape, {
      error: (issue) => issue.code !== 'invalid_type'
        ? undefined
        : issue.input === undefined
          ? 'is required: list who may sign in under users, emails, domains or groups, or use users: ["*"] for anyone who can sign in at the identity provider'
          : 'must be a mapping of users, emails, domains and groups',
    }),
    deny: accessRules.optional(),
  },
  {
    error: (issue) => issue.code !== 'invalid_type'
      ? undefined
      : issue.input === undefined
        ? 'is required: say who may sign in, for example access: { allow: { domains: [example.com] } }'
        : 'must be a mapping with allow (and optionally deny)',
  },
).superRefine(checkAllow, always);

export const serviceAccess = z.strictObject({
  allow: accessRules.optional(),
  deny: accessRules.optional(),
}).superRefine(checkAllow, always);
