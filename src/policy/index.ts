export { decideAccess, matchingRule, type AccessDecision, type AccessPolicy, type AccessRules, type Subject } from './access.ts';
