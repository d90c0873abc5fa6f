/**
 * The request body on its way to the MCP server: streamed, counted against the service's size
 * limit, and its beginning remembered so an error answer can carry the JSON-RPC id of the
 * request (JSON-RPC 2.0 §5), and the tool-call audit can read the calls (tool-call-stream.ts),
 * without ever holding a large body in memory.
 */
import { Transform, type TransformCallback } from 'node:stream';

const REMEMBERED_BYTES = 64 * 1024;

export class BodyTooLargeError extends Error {
  constructor(limit: number) {
    super(`request body over ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

export class MeteredBody extends Transform {
  readonly limit: number;
  received = 0;
  #prefix: Buffer[] = [];
  #prefixLength = 0;

  constructor(limit: number) {
    super();
    this.limit = limit;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.received += chunk.length;
    if (this.received > this.limit) {
      done(new BodyTooLargeError(this.limit));
      return;
    }
    if (this.#prefixLength < REMEMBERED_BYTES) {
      this.#prefix.push(chunk);
      this.#prefixLength += chunk.length;
    }
    done(null, chunk);
  }

  /** The request's JSON-RPC id, when the part of the body seen so far is a whole request object. */
  rpcId(): string | number | null {
    return jsonRpcIdOf(Buffer.concat(this.#prefix).toString('utf8'));
  }

  /** The body's beginning as seen so far, and whether that is all of it (the body ended within the remembered part). */
  remembered(): { text: Buffer; whole: boolean } {
    const text = this.#prefix.length === 1 ? this.#prefix[0] as Buffer : Buffer.concat(this.#prefix);
    return { text, whole: this.writableFinished && this.#prefixLength === this.received };
  }
}

export function jsonRpcIdOf(text: string): string | number | null {
  try {
    const message = JSON.parse(text) as unknown;
    if (message && typeof message === 'object' && !Array.isArray(message)) {
      const id = (message as { id?: unknown }).id;
      if (typeof id === 'string' || typeof id === 'number') return id;
    }
  } catch {
    // Not JSON, or cut off: answer without an id, as JSON-RPC allows for unreadable requests.
  }
  return null;
}

/** Reads a whole body of at most `limit` bytes; for the requests whose body a policy must read. */
export async function readBody(stream: AsyncIterable<Buffer>, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of stream) {
    length += chunk.length;
    if (length > limit) throw new BodyTooLargeError(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length);
}
