import assert from "node:assert/strict";
import { crc32 } from "./crc32.ts";

Deno.test("crc32() matches the IEEE check value and continues across chunks", () => {
  const data = new TextEncoder().encode("123456789");
  assert.equal(crc32(data), 0xcbf43926);
  assert.equal(crc32(data.subarray(4), crc32(data.subarray(0, 4))), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});
