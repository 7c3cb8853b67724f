/**
 * Exact-length reads from a byte stream (a socket), with one reused buffer
 * for small messages and direct reads into the destination for large ones.
 *
 * @module
 */
import { assert } from "../assert.ts";

/** A source of bytes: `Deno.Conn` or anything shaped like its `read`. */
export interface ByteSource {
  /** Reads into `buffer`; resolves to the count read, or `null` at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
}

/** Bytes of the reused read buffer: holds many request headers and small writes per read. */
export const BYTE_READER_BUFFER_BYTES = 256 * 1024;
/** Reads at least this long skip the reused buffer and land in their own array. */
export const BYTE_READER_DIRECT_BYTES = 64 * 1024;

/**
 * Reads exact byte counts from a {@linkcode ByteSource}.
 *
 * A stream that ends in the middle of a message throws
 * `Deno.errors.UnexpectedEof`; one that ends between messages makes
 * {@linkcode ByteReader.readView} and {@linkcode ByteReader.readCopy}
 * resolve to `null`.
 *
 * @example Usage
 * ```ts
 * import { ByteReader } from "./byte_reader.ts";
 * const chunks = [new Uint8Array([1, 2]), new Uint8Array([3])];
 * const reader = new ByteReader({
 *   read(buffer) {
 *     const chunk = chunks.shift();
 *     if (chunk === undefined) return Promise.resolve(null);
 *     buffer.set(chunk);
 *     return Promise.resolve(chunk.length);
 *   },
 * });
 * const bytes = await reader.readCopy(3);
 * if (bytes?.[2] !== 3) throw new Error("wrong bytes");
 * ```
 */
export class ByteReader {
  #source: ByteSource;
  #buffer = new Uint8Array(BYTE_READER_BUFFER_BYTES);
  #start = 0;
  #end = 0;
  #eof = false;

  /** Creates a reader of `source`. */
  constructor(source: ByteSource) {
    this.#source = source;
  }

  /** Bytes read from the source but not yet returned. */
  get bufferedBytes(): number {
    return this.#end - this.#start;
  }

  /**
   * Reads exactly `length` bytes (at most the buffer size) and returns a view
   * into the reused buffer, valid only until the next call.
   *
   * @throws {Deno.errors.UnexpectedEof} when the stream ends mid-message.
   */
  async readView(length: number): Promise<Uint8Array | null> {
    assert(length > 0 && length <= BYTE_READER_BUFFER_BYTES, `bad view length ${length}`);
    if (!(await this.#fill(length))) return null;
    const out = this.#buffer.subarray(this.#start, this.#start + length);
    this.#start += length;
    return out;
  }

  /**
   * Reads exactly `length` bytes into a new array the caller owns.
   *
   * @throws {Deno.errors.UnexpectedEof} when the stream ends mid-message.
   */
  async readCopy(length: number): Promise<Uint8Array | null> {
    assert(Number.isSafeInteger(length) && length >= 0, `bad length ${length}`);
    if (length === 0) return new Uint8Array(0);
    if (length < BYTE_READER_DIRECT_BYTES) {
      if (!(await this.#fill(length))) return null;
      const out = this.#buffer.slice(this.#start, this.#start + length);
      this.#start += length;
      return out;
    }
    const out = new Uint8Array(length);
    let filled = Math.min(length, this.#end - this.#start);
    out.set(this.#buffer.subarray(this.#start, this.#start + filled));
    this.#start += filled;
    while (filled < length) {
      const count = await this.#readSource(out.subarray(filled));
      if (count === null) {
        if (filled === 0) return null;
        throw new Deno.errors.UnexpectedEof(`stream ended ${length - filled} bytes short`);
      }
      filled += count;
    }
    return out;
  }

  /**
   * Fills `target` with exactly `target.length` bytes; false when the stream
   * ended cleanly before the first byte.
   *
   * @throws {Deno.errors.UnexpectedEof} when the stream ends mid-message.
   */
  async readInto(target: Uint8Array): Promise<boolean> {
    const length = target.length;
    let filled = Math.min(length, this.#end - this.#start);
    target.set(this.#buffer.subarray(this.#start, this.#start + filled));
    this.#start += filled;
    while (filled < length) {
      if (length - filled < BYTE_READER_DIRECT_BYTES) {
        // A short tail: refill the buffer rather than read a few bytes at a time.
        if (!(await this.#fill(Math.min(length - filled, 1)))) {
          if (filled === 0) return false;
          throw new Deno.errors.UnexpectedEof(`stream ended ${length - filled} bytes short`);
        }
        const take = Math.min(length - filled, this.#end - this.#start);
        target.set(this.#buffer.subarray(this.#start, this.#start + take), filled);
        this.#start += take;
        filled += take;
        continue;
      }
      const count = await this.#readSource(target.subarray(filled));
      if (count === null) {
        if (filled === 0) return false;
        throw new Deno.errors.UnexpectedEof(`stream ended ${length - filled} bytes short`);
      }
      filled += count;
    }
    return true;
  }

  /**
   * Reads and drops exactly `length` bytes without holding them.
   *
   * @throws {Deno.errors.UnexpectedEof} when the stream ends first.
   */
  async skip(length: number): Promise<void> {
    let left = length;
    while (left > 0) {
      if (this.#start === this.#end) {
        this.#start = this.#end = 0;
        const count = await this.#readSource(this.#buffer);
        if (count === null) throw new Deno.errors.UnexpectedEof(`stream ended ${left} bytes short`);
        this.#end = count;
      }
      const take = Math.min(left, this.#end - this.#start);
      this.#start += take;
      left -= take;
    }
  }

  /** Ensures `length` bytes are buffered; false on a clean end of stream. */
  async #fill(length: number): Promise<boolean> {
    if (this.#end - this.#start >= length) return true;
    if (this.#start + length > this.#buffer.length) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end - this.#start < length) {
      const count = await this.#readSource(this.#buffer.subarray(this.#end));
      if (count === null) {
        if (this.#end === this.#start) return false;
        throw new Deno.errors.UnexpectedEof(
          `stream ended ${length - (this.#end - this.#start)} bytes short`,
        );
      }
      this.#end += count;
    }
    return true;
  }

  async #readSource(into: Uint8Array): Promise<number | null> {
    if (this.#eof) return null;
    const count = await this.#source.read(into);
    if (count === null) {
      this.#eof = true;
      return null;
    }
    return count;
  }
}
