import { describe, expect, it } from 'vitest';
import { grantableScopes } from './authorization-request.ts';

const offered = ['tools.read', 'tools.call'] as const;

describe('grantableScopes (checklist §5: scope is a wish-list)', () => {
  it('grants the intersection of what was asked and what the service offers', () => {
    expect(grantableScopes('tools.read', offered)).toEqual(['tools.read']);
    expect(grantableScopes('tools.call', offered)).toEqual(['tools.call']);
    expect(grantableScopes('tools.read tools.call', offered)).toEqual(['tools.read', 'tools.call']);
  });

  it('drops scopes it does not know instead of refusing them', () => {
    expect(grantableScopes('claudeai tools.call', offered)).toEqual(['tools.call']);
    expect(grantableScopes('openid email profile offline_access tools.read', offered)).toEqual(['tools.read']);
  });

  it('grants everything offered when nothing known was asked for', () => {
    expect(grantableScopes(undefined, offered)).toEqual(['tools.read', 'tools.call']);
    expect(grantableScopes('', offered)).toEqual(['tools.read', 'tools.call']);
    expect(grantableScopes('claudeai', offered)).toEqual(['tools.read', 'tools.call']);
    expect(grantableScopes('openid email profile', offered)).toEqual(['tools.read', 'tools.call']);
  });

  it('keeps the service order, tolerates repeated spaces and ignores duplicates', () => {
    expect(grantableScopes('tools.call  tools.read tools.call', offered)).toEqual(['tools.read', 'tools.call']);
  });

  it('matches scope names exactly (case-sensitive, RFC 6749 §3.3)', () => {
    expect(grantableScopes('TOOLS.READ tools.call', offered)).toEqual(['tools.call']);
    expect(grantableScopes('tools', offered)).toEqual(['tools.read', 'tools.call']);
  });

  it('grants nothing for a service that offers no scopes', () => {
    expect(grantableScopes('tools.read', [])).toEqual([]);
  });

  it('returns a new array, never the offered list itself', () => {
    const list = ['a'];
    const granted = grantableScopes(undefined, list);
    expect(granted).toEqual(['a']);
    expect(granted).not.toBe(list);
  });
});
