/**
 * The memory address of a byte array, for FFI calls that take addresses
 * inside structures (`struct iovec`) or through shared memory (the I/O
 * thread's jobs).
 *
 * `Deno.UnsafePointer.of` plus `Deno.UnsafePointer.value` cost about 1 µs a
 * call (a pointer object and a BigInt), as much as the `pread` of a cached
 * 4 KiB sector. The address of an `ArrayBuffer`'s memory does not change
 * while it lives (V8 does not move backing stores), so it is looked up once
 * per buffer and kept in a `WeakMap`; a view's address is then its buffer's
 * plus its offset, a plain number (user-space addresses are below 2^53).
 *
 * @module
 */
import { assert } from "../assert.ts";

const bufferAddresses = new WeakMap<ArrayBufferLike, number>();

/**
 * The address of the first byte of `bytes`.
 *
 * @example Usage
 * ```ts
 * import { addressOf } from "./address.ts";
 * const bytes = new Uint8Array(16);
 * if (addressOf(bytes.subarray(4)) !== addressOf(bytes) + 4) throw new Error("wrong");
 * ```
 */
export function addressOf(bytes: Uint8Array): number {
  const buffer = bytes.buffer;
  let base = bufferAddresses.get(buffer);
  if (base === undefined) {
    base = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
    assert(Number.isSafeInteger(base), `address ${base} is not a safe integer`);
    bufferAddresses.set(buffer, base);
  }
  return base + bytes.byteOffset;
}
