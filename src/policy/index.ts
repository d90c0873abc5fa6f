export { decideAccess, matchingRule, usesGitHubMembership, type AccessDecision, type AccessPolicy, type AccessRules, type Subject } from './access.ts';
