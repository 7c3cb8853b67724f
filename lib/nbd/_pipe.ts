/**
 * An in-memory duplex byte stream for tests: two ends shaped like
 * `Deno.Conn` (`read`, `write`, `close`). Test-only.
 *
 * @module
 */

/** One end of a {@linkcode pipe}. */
export interface PipeEnd {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
  /** Whether this end was closed. */
  readonly closed: boolean;
}

class Channel {
  chunks: Uint8Array[] = [];
  ended = false;
  waiter: (() => void) | null = null;

  push(bytes: Uint8Array): void {
    this.chunks.push(bytes.slice());
    this.wake();
  }

  end(): void {
    this.ended = true;
    this.wake();
  }

  wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }
}

class End implements PipeEnd {
  #in: Channel;
  #out: Channel;
  #closed = false;

  constructor(incoming: Channel, outgoing: Channel) {
    this.#in = incoming;
    this.#out = outgoing;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#closed) throw new Deno.errors.BadResource("pipe end closed");
      const chunk = this.#in.chunks[0];
      if (chunk !== undefined) {
        const count = Math.min(chunk.length, buffer.length);
        buffer.set(chunk.subarray(0, count));
        if (count === chunk.length) this.#in.chunks.shift();
        else this.#in.chunks[0] = chunk.subarray(count);
        return count;
      }
      if (this.#in.ended) return null;
      await new Promise<void>((resolve) => this.#in.waiter = resolve);
    }
  }

  write(bytes: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("pipe end closed"));
    if (this.#out.ended) return Promise.reject(new Deno.errors.BrokenPipe("peer closed"));
    this.#out.push(bytes);
    return Promise.resolve(bytes.length);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out.end();
    this.#in.end();
  }
}

/** Creates a connected pair of ends: bytes written to one are read from the other. */
export function pipe(): [PipeEnd, PipeEnd] {
  const aToB = new Channel();
  const bToA = new Channel();
  return [new End(bToA, aToB), new End(aToB, bToA)];
}
