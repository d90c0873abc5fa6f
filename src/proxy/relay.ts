/**
 * Piping on the hot path. `stream.pipeline` creates an AbortController for every call and
 * aborts it when the pipe ends, which builds a DOMException with a stack trace: 7–12% of the
 * gateway's CPU per proxied request in the benchmark. This does the same job for two streams.
 */
import type { Readable, Writable } from 'node:stream';

/** Pipes `from` into `to`; resolves when `to` finished, rejects (destroying both) on an error or an early close. */
export function relay(from: Readable, to: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (error?: unknown) => {
      if (settled) return;
      settled = true;
      from.off('error', settle);
      to.off('error', settle);
      to.off('finish', onFinish);
      to.off('close', onClose);
      if (error === undefined) {
        resolve();
        return;
      }
      from.destroy();
      to.destroy();
      reject(error);
    };
    const onFinish = () => settle();
    const onClose = () => settle(to.writableFinished ? undefined : new Error('the destination closed before the end'));
    from.on('error', settle);
    to.on('error', settle);
    to.on('finish', onFinish);
    to.on('close', onClose);
    from.pipe(to);
  });
}
