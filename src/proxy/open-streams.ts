/**
 * The event streams the gateway is sending to clients, so a shutdown can end them properly (a
 * last chunk terminator, not a reset: the client sees a normal end and reconnects, to another
 * replica, with `Last-Event-ID`):
 *
 *   listen   a GET stream for server-initiated messages: idle by design, it never finishes by
 *            itself, so it ends as soon as the shutdown starts
 *   call     the event stream answering a POST (a tool call under way): it runs until the
 *            shutdown's deadline, then ends
 *
 * Only event streams are tracked (a Set add and delete per stream); a plain JSON answer ends
 * by itself, or with its connection at the deadline.
 */
import type { ServerResponse } from 'node:http';

export type StreamKind = 'listen' | 'call';

interface OpenStream {
  kind: StreamKind;
  /** Ends the stream cleanly; also releases what feeds it. */
  end(): void;
}

export class OpenStreams {
  #streams = new Map<ServerResponse, OpenStream>();
  #draining = false;

  /** True once a shutdown began: new listen streams end at once, answers should close their connection. */
  get draining(): boolean {
    return this.#draining;
  }

  get size(): number {
    return this.#streams.size;
  }

  /**
   * Tracks `res` until it closes. `end` (default: end the response) must leave the client a
   * well-formed end of the stream. A listen stream that opens during a shutdown ends at once.
   */
  track(res: ServerResponse, kind: StreamKind, end: () => void = () => endResponse(res)): void {
    if (this.#draining && kind === 'listen') {
      // After the headers went out, so the client sees an empty stream that ended, not an error.
      setImmediate(end);
      return;
    }
    this.#streams.set(res, { kind, end });
    res.once('close', () => this.#streams.delete(res));
  }

  /** The shutdown starts: every listen stream ends now. Returns how many were ended. */
  drain(): number {
    this.#draining = true;
    return this.#endWhere((stream) => stream.kind === 'listen');
  }

  /** The shutdown's deadline: every stream still open ends. Returns how many were ended. */
  endAll(): number {
    this.#draining = true;
    return this.#endWhere(() => true);
  }

  #endWhere(match: (stream: OpenStream) => boolean): number {
    let ended = 0;
    for (const [res, stream] of [...this.#streams]) {
      if (!match(stream)) continue;
      this.#streams.delete(res);
      stream.end();
      ended++;
    }
    return ended;
  }
}

/**
 * Ends a response that something else writes to (an SDK transport, a legacy SSE session): a
 * late write after the end must not become an unhandled 'error' event.
 */
export function endResponse(res: ServerResponse): void {
  if (res.writableEnded || res.destroyed) return;
  res.on('error', () => undefined);
  // Before its headers the answer is not a stream yet: ending it would send an empty 200. It is
  // left to finish, or to be cut with its connection at the deadline.
  if (!res.headersSent) return;
  res.end();
}
