/**
 * Serialized writes to a byte sink (a socket): each message is written whole
 * and in the order it was queued, so replies from concurrent requests never
 * interleave. Small messages queued together go out in one write.
 *
 * @module
 */
import { ClosedError } from "../errors.ts";

/** A sink of bytes: `Deno.Conn` or anything shaped like its `write`. */
export interface ByteSink {
  /** Writes some prefix of `bytes`; resolves to the count written. */
  write(bytes: Uint8Array): Promise<number>;
}

/**
 * Queued messages are concatenated into one write while their total stays
 * under this many bytes.
 */
export const SERIAL_WRITER_COALESCE_BYTES = 256 * 1024;
/**
 * A part longer than this that does not fit in the current run is written as
 * it is rather than copied into the next one. Smaller parts are copied: a
 * write to the socket is an asynchronous operation that costs more than
 * copying 64 KiB.
 */
export const SERIAL_WRITER_DIRECT_BYTES = 64 * 1024;
/**
 * The runs of one batch are joined in one buffer of this size, reused from
 * batch to batch (a batch is written completely before the next is taken);
 * only runs past it get a buffer of their own. Allocating those (zeroed) was
 * half of what coalescing cost under 64 KiB random reads.
 */
export const SERIAL_WRITER_SCRATCH_BYTES = 1024 * 1024;

interface Pending {
  parts: Uint8Array[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Writes messages (each a list of parts) one after another.
 *
 * After a write fails, every queued and later message rejects with the
 * same error: the stream is broken.
 *
 * @example Usage
 * ```ts
 * import { SerialWriter } from "./serial_writer.ts";
 * const written: number[] = [];
 * const writer = new SerialWriter({
 *   write(bytes) {
 *     written.push(...bytes);
 *     return Promise.resolve(bytes.length);
 *   },
 * });
 * await Promise.all([writer.write([new Uint8Array([1])]), writer.write([new Uint8Array([2, 3])])]);
 * if (written.join() !== "1,2,3") throw new Error("out of order");
 * ```
 */
export class SerialWriter {
  #sink: ByteSink;
  #queue: Pending[] = [];
  #running = false;
  #error: unknown = null;
  #idle: (() => void)[] = [];
  #corked = false;
  /**
   * Where the runs of small parts of a batch are joined
   * ({@linkcode SERIAL_WRITER_SCRATCH_BYTES}).
   */
  #scratch: Uint8Array | null = null;

  /** Creates a writer to `sink`. */
  constructor(sink: ByteSink) {
    this.#sink = sink;
  }

  /** Whether a write has failed (the peer went away). */
  get broken(): boolean {
    return this.#error !== null;
  }

  /** Queues a message; resolves once all of it is written. */
  write(parts: Uint8Array[]): Promise<void> {
    if (this.#error !== null) return Promise.reject(this.#error);
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ parts, resolve, reject });
      if (!this.#running && !this.#corked) void this.#pump();
    });
  }

  /**
   * Holds queued messages back until {@linkcode SerialWriter.uncork}, so that
   * replies produced together leave in one write (one system call) instead of
   * one each. A writer already writing finishes its current batch.
   */
  cork(): void {
    this.#corked = true;
  }

  /** Writes what {@linkcode SerialWriter.cork} held back, and lets later messages go at once. */
  uncork(): void {
    if (!this.#corked) return;
    this.#corked = false;
    if (!this.#running && this.#queue.length > 0) void this.#pump();
  }

  /** Whether messages are being held back. */
  get corked(): boolean {
    return this.#corked;
  }

  /**
   * Resolves once nothing is queued or being written (messages held by a cork
   * count as queued). Never rejects.
   */
  idle(): Promise<void> {
    if (!this.#running && (this.#queue.length === 0 || this.#error !== null)) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Fails every queued and later message with `error` (e.g. the socket was closed). */
  fail(error: unknown = new ClosedError("writer closed")): void {
    if (this.#error === null) this.#error = error;
    const queue = this.#queue.splice(0);
    for (const pending of queue) pending.reject(this.#error);
  }

  async #pump(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length > 0 && this.#error === null && !this.#corked) {
        const batch = this.#takeBatch();
        try {
          for (const bytes of batch.bytes) await this.#writeAll(bytes);
        } catch (error) {
          this.#error ??= error;
          for (const pending of batch.pendings) pending.reject(error);
          this.fail(error);
          break;
        }
        for (const pending of batch.pendings) pending.resolve();
      }
    } finally {
      this.#running = false;
      if (this.#queue.length === 0 || this.#error !== null) {
        for (const resolve of this.#idle.splice(0)) resolve();
      }
    }
  }

  /** Takes queued messages, coalescing runs of small parts into single buffers. */
  #takeBatch(): { pendings: Pending[]; bytes: Uint8Array[] } {
    const pendings = this.#queue.splice(0);
    const bytes: Uint8Array[] = [];
    let run: Uint8Array[] = [];
    let runBytes = 0;
    let scratchUsed = 0;
    const flushRun = () => {
      if (run.length === 1) bytes.push(run[0]!);
      else if (run.length > 1) {
        let joined: Uint8Array;
        if (scratchUsed + runBytes <= SERIAL_WRITER_SCRATCH_BYTES) {
          this.#scratch ??= new Uint8Array(SERIAL_WRITER_SCRATCH_BYTES);
          joined = this.#scratch.subarray(scratchUsed, scratchUsed + runBytes);
          scratchUsed += runBytes;
        } else {
          joined = new Uint8Array(runBytes);
        }
        let at = 0;
        for (const part of run) {
          joined.set(part, at);
          at += part.length;
        }
        bytes.push(joined);
      }
      run = [];
      runBytes = 0;
    };
    for (const pending of pendings) {
      for (const part of pending.parts) {
        if (part.length === 0) continue;
        if (runBytes + part.length > SERIAL_WRITER_COALESCE_BYTES) {
          flushRun();
          if (part.length > SERIAL_WRITER_DIRECT_BYTES) {
            bytes.push(part);
            continue;
          }
        }
        run.push(part);
        runBytes += part.length;
      }
    }
    flushRun();
    return { pendings, bytes };
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) {
      at += await this.#sink.write(bytes.subarray(at));
    }
  }
}
