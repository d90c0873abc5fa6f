import { afterEach, describe, expect, it, vi } from 'vitest';
import { createMemoryStore } from '../store/memory-store.ts';
import { createSessionOwners } from './session-owners.ts';

afterEach(() => void vi.useRealTimers());

describe('session owners', () => {
  it('binds a session id to its account per service, and keeps no usable id in the store', async () => {
    const store = createMemoryStore();
    const owners = createSessionOwners(store);
    await owners.record('tools', 'session-1', 'corp:alice');
    expect(await owners.ownerOf('tools', 'session-1')).toBe('corp:alice');
    expect(await owners.ownerOf('other', 'session-1')).toBeUndefined();
    expect(await owners.ownerOf('tools', 'session-2')).toBeUndefined();
    const stored = await store.list('mcp-session', '');
    expect(stored.map((record) => record.id)).toEqual([expect.stringMatching(/^tools:[A-Za-z0-9_-]{43}$/)]);
    expect(JSON.stringify(stored)).not.toContain('session-1');
    // Another replica (same store, its own cache) knows the owner too.
    expect(await createSessionOwners(store).ownerOf('tools', 'session-1')).toBe('corp:alice');
    await owners.forget('tools', 'session-1');
    expect(await createSessionOwners(store).ownerOf('tools', 'session-1')).toBeUndefined();
    expect(await owners.ownerOf('tools', 'session-1')).toBeUndefined();
    await store.close();
  });

  it('renews a record that is used, at most once a day', async () => {
    vi.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z'), toFake: ['Date'] });
    const store = createMemoryStore();
    const owners = createSessionOwners(store);
    await owners.record('tools', 's', 'corp:alice');
    const expiry = async () => (await store.list('mcp-session', ''))[0]?.expiresAt;
    const first = await expiry();
    vi.setSystemTime(new Date('2026-01-01T12:00:00Z'));
    await owners.ownerOf('tools', 's');
    expect(await expiry()).toBe(first);
    vi.setSystemTime(new Date('2026-01-02T06:00:00Z'));
    await owners.ownerOf('tools', 's');
    expect(await expiry()).toBe((first ?? 0) + 30 * 3600);
    await store.close();
  });
});
