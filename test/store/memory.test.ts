import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../../src/store/memory-store.ts';
import { createStore } from '../../src/store/index.ts';
import { describeStoreContract } from '../store-contract.ts';

describeStoreContract('memory', ({ now }) => createMemoryStore({ now, sweepIntervalMs: 0 }));

describe('memory store', () => {
  it('is what createStore builds for type memory', async () => {
    const store = await createStore({ type: 'memory' });
    expect(store.engine).toBe('memory');
    await store.close();
  });

  it('sweeps on its own timer', async () => {
    let nowMs = 1_000_000;
    const store = createMemoryStore({ now: () => nowMs, sweepIntervalMs: 5 });
    await store.put('Code', 'c1', { v: 1 }, { ttlSeconds: 1 });
    nowMs += 2000;
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Back in time the record would be live again, unless the timer's sweep removed it.
    nowMs -= 2000;
    expect(await store.get('Code', 'c1')).toBeUndefined();
    await store.close();
  });

  it('rejects invalid ttl and window lengths instead of storing nonsense', async () => {
    const store = createMemoryStore({ sweepIntervalMs: 0 });
    await expect(store.put('Code', 'c1', {}, { ttlSeconds: -1 })).rejects.toBeInstanceOf(RangeError);
    await expect(store.increment('k', 0)).rejects.toBeInstanceOf(RangeError);
    await store.close();
  });
});
