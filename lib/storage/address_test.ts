import assertNode from "node:assert/strict";
import { addressOf } from "./address.ts";

function pointerValue(bytes: Uint8Array): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}

Deno.test("addressOf: a view's address is its buffer's plus its offset, as Deno.UnsafePointer gives it", () => {
  const bytes = new Uint8Array(1 << 16);
  for (
    const view of [bytes, bytes.subarray(1), bytes.subarray(4096, 8192), bytes.subarray(65535)]
  ) {
    assertNode.equal(addressOf(view), pointerValue(view));
  }
  // Views of another buffer, and of a shared one.
  const other = new Uint8Array(100);
  assertNode.notEqual(addressOf(other), addressOf(bytes));
  assertNode.equal(addressOf(other.subarray(7)), pointerValue(other) + 7);
  const shared = new Uint8Array(new SharedArrayBuffer(4096), 512);
  assertNode.equal(addressOf(shared), pointerValue(shared));
});

Deno.test("addressOf: the address written there is where the bytes are", () => {
  const bytes = new Uint8Array(64);
  const view = bytes.subarray(10, 20);
  const pointer = Deno.UnsafePointer.create(BigInt(addressOf(view)));
  assertNode.ok(pointer !== null);
  view[3] = 0xab;
  assertNode.equal(new Deno.UnsafePointerView(pointer).getUint8(3), 0xab);
});
