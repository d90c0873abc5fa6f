import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { createStore } from '../../src/store/index.ts';
import { createSqliteStore } from '../../src/store/sqlite-store.ts';
import { StoreUnavailableError } from '../../src/store/store.ts';
import { describeStoreContract } from '../store-contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-sqlite-'));
let files = 0;
/** A fresh path per store, in a directory that does not exist yet, so creating parents is tested. */
const freshPath = (): string => join(dir, `nested-${++files}`, 'store.db');

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describeStoreContract('sqlite', ({ now }) => createSqliteStore({ path: freshPath(), now, sweepIntervalMs: 0 }));

describe('sqlite store', () => {
  it('is what createStore builds for type sqlite', async () => {
    const store = await createStore({ type: 'sqlite', path: freshPath() });
    expect(store.engine).toBe('sqlite');
    await store.close();
  });

  it('keeps data across closing and reopening the same file', async () => {
    const path = freshPath();
    const first = createSqliteStore({ path, sweepIntervalMs: 0 });
    await first.put('Session', 's1', { v: 1 }, { uid: 'u1', grantId: 'g1' });
    await first.consume('Session', 's1', 1234);
    expect(await first.increment('rate', 3600)).toBe(1);
    await first.close();

    const second = createSqliteStore({ path, sweepIntervalMs: 0 });
    expect(await second.get('Session', 's1')).toStrictEqual({ value: { v: 1 }, consumedAt: 1234 });
    expect((await second.findByIndex('Session', 'uid', 'u1'))?.id).toBe('s1');
    expect(await second.increment('rate', 3600)).toBe(2);
    await second.deleteByGrant('g1');
    expect(await second.get('Session', 's1')).toBeUndefined();
    await second.close();
  });

  it('creates the database file readable by its owner only', async () => {
    const path = freshPath();
    const store = createSqliteStore({ path, sweepIntervalMs: 0 });
    await store.put('Session', 's1', { v: 1 });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // SQLite gives the write-ahead log the database file's mode.
    expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    await store.close();
  });

  it('shares state between two stores on one file', async () => {
    const path = freshPath();
    const a = createSqliteStore({ path, sweepIntervalMs: 0 });
    const b = createSqliteStore({ path, sweepIntervalMs: 0 });
    await a.put('Code', 'c1', { v: 1 });
    const consumed = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).consume('Code', 'c1', 100 + i)),
    );
    expect(consumed.filter(Boolean)).toHaveLength(1);
    const counts = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).increment('k', 60)));
    expect([...counts].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    await a.close();
    await b.close();
  });

  it('stays exact when worker threads with their own connections race', async () => {
    const path = freshPath();
    const setup = createSqliteStore({ path, sweepIntervalMs: 0 });
    await setup.put('Code', 'c1', { v: 1 });
    await setup.close();

    const workers = Array.from({ length: 4 }, () => startRacer(path));
    await Promise.all(workers.map((racer) => racer.ready));
    // Release all at once, so the connections contend for the write lock.
    for (const racer of workers) racer.worker.postMessage('go');
    const results = await Promise.all(workers.map((racer) => racer.done));

    expect(results.filter((result) => result.won)).toHaveLength(1);
    const counts = results.flatMap((result) => result.counts).sort((x, y) => x - y);
    expect(counts).toEqual(Array.from({ length: 4 * RACER_INCREMENTS }, (_, i) => i + 1));
  });

  it('sweeps on its own timer', async () => {
    let nowMs = 1_000_000;
    const store = createSqliteStore({ path: freshPath(), now: () => nowMs, sweepIntervalMs: 5 });
    await store.put('Code', 'c1', { v: 1 }, { ttlSeconds: 1 });
    nowMs += 2000;
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Back in time the record would be live again, unless the timer's sweep removed it.
    nowMs -= 2000;
    expect(await store.get('Code', 'c1')).toBeUndefined();
    await store.close();
  });

  it('sweeps a large backlog in batches, letting other work run between them', async () => {
    let nowMs = 1_000_000;
    const store = createSqliteStore({ path: freshPath(), now: () => nowMs, sweepIntervalMs: 0 });
    for (let i = 0; i < 1200; i++) await store.put('Code', `c${i}`, { i }, { ttlSeconds: 1 });
    await store.put('Code', 'live', { v: 1 });
    nowMs += 2000;
    // Each tick of other work gets a turn: the event loop is not held for the whole sweep.
    let ticks = 0;
    let sweeping = true;
    const tick = (): void => {
      ticks++;
      if (sweeping) setImmediate(tick);
    };
    setImmediate(tick);
    const removed = await store.sweep();
    sweeping = false;
    expect(removed).toBe(1200);
    expect(ticks).toBeGreaterThanOrEqual(1);
    expect((await store.get('Code', 'live'))?.value).toEqual({ v: 1 });
    await store.close();
  });

  it('reports a file that is not a database as StoreUnavailableError', () => {
    const path = join(dir, 'not-a-database.db');
    writeFileSync(path, 'plain text, not SQLite '.repeat(100));
    expect(() => createSqliteStore({ path, sweepIntervalMs: 0 })).toThrow(StoreUnavailableError);
  });

  it('works in memory with :memory:', async () => {
    const store = createSqliteStore({ path: ':memory:', sweepIntervalMs: 0 });
    await store.put('Session', 's1', { v: 1 });
    expect((await store.get('Session', 's1'))?.value).toEqual({ v: 1 });
    await store.close();
  });
});

const RACER_INCREMENTS = 50;
const RACER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
import(workerData.moduleUrl).then(async ({ createSqliteStore }) => {
  const store = createSqliteStore({ path: workerData.path, sweepIntervalMs: 0 });
  parentPort.postMessage({ ready: true });
  await new Promise((resolve) => parentPort.once('message', resolve));
  const counts = [];
  for (let i = 0; i < workerData.increments; i++) counts.push(await store.increment('k', 60));
  const won = await store.consume('Code', 'c1', 1);
  await store.close();
  parentPort.postMessage({ counts, won });
});`;

interface RaceResult {
  counts: number[];
  won: boolean;
}

/** A worker thread with its own connection to `path`: a stand-in for a second gateway process. */
function startRacer(path: string): { worker: Worker; ready: Promise<void>; done: Promise<RaceResult> } {
  const moduleUrl = pathToFileURL(join(import.meta.dirname, '../../src/store/sqlite-store.ts')).href;
  const worker = new Worker(RACER_SOURCE, {
    eval: true,
    workerData: { moduleUrl, path, increments: RACER_INCREMENTS },
  });
  const messages: Array<(message: unknown) => void> = [];
  worker.on('message', (message) => messages.shift()?.(message));
  const next = (): Promise<unknown> =>
    new Promise((resolve, reject) => {
      messages.push(resolve);
      worker.once('error', reject);
    });
  const ready = next().then(() => undefined);
  const done = next() as Promise<RaceResult>;
  return { worker, ready, done };
}
