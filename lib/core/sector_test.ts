import assert from "node:assert/strict";
import { BLOCK_SIZE_BYTES_MAX, BLOCK_SIZE_BYTES_MIN } from "../constants.ts";
import { checkNewBlockSize } from "./sector.ts";

Deno.test("checkNewBlockSize() takes powers of two from 256 B to 16 MiB and nothing else", () => {
  for (let size = BLOCK_SIZE_BYTES_MIN; size <= BLOCK_SIZE_BYTES_MAX; size *= 2) {
    checkNewBlockSize(size);
  }
  for (
    const size of [
      BLOCK_SIZE_BYTES_MIN / 2,
      BLOCK_SIZE_BYTES_MAX * 2,
      1000,
      3 * 4096,
      512 * 1024 + 4096,
      0,
      -4096,
      4096.5,
      NaN,
    ]
  ) {
    assert.throws(() => checkNewBlockSize(size), /must be a power of two from 256 B to 16 MiB/);
  }
});
