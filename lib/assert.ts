/**
 * Assertions for programmer errors. An {@linkcode AssertionError} is a bug in
 * Torus, never an operating condition: nothing catches it, and a process that
 * throws one exits.
 *
 * @module
 */

/** Thrown when an internal invariant does not hold. */
export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/**
 * Asserts that `condition` is truthy.
 *
 * @example Usage
 * ```ts
 * import { assert } from "./assert.ts";
 * assert(1 + 1 === 2, "arithmetic works");
 * ```
 */
export function assert(condition: unknown, message = "Assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** Marks code that must be unreachable for every value of `value`'s type. */
export function unreachable(value: never): never {
  throw new AssertionError(`Unreachable code reached with ${String(value)}`);
}
