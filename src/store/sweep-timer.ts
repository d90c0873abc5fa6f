/**
 * The periodic sweep every engine runs: one sweep at a time, failures ignored (reads enforce
 * expiry anyway, and the next tick tries again), and an unref'd timer, so an idle store never
 * keeps the process alive on its own.
 */
export function startSweepTimer(sweep: () => Promise<unknown>, intervalMs: number): { stop(): void } {
  let sweeping = false;
  const tick = (): void => {
    if (sweeping) return;
    sweeping = true;
    sweep().catch(() => undefined).finally(() => { sweeping = false; });
  };
  const timer = intervalMs > 0 ? setInterval(tick, intervalMs).unref() : undefined;
  return { stop: () => clearInterval(timer) };
}
