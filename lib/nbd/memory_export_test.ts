import assert from "node:assert/strict";
import { ExportNotFoundError } from "./export.ts";
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from "./protocol.ts";
import { MEMORY_EXPORT_PAGE_BYTES, MemoryExportProvider } from "./memory_export.ts";

const page = MEMORY_EXPORT_PAGE_BYTES;

Deno.test("memory export: writes read back across pages; untouched bytes are zero", async () => {
  const provider = new MemoryExportProvider([{ name: "a", sizeBytes: 4 * page }]);
  const exp = await provider.open("a");
  const data = Uint8Array.from({ length: page + 100 }, (_, i) => i & 0xff);
  await exp.write(page - 50, data, { fua: false });
  assert.deepEqual(await exp.read(page - 50, data.length), data);
  assert.ok((await exp.read(0, page - 50)).every((b) => b === 0));
  assert.equal(provider.allocatedPages, 3);
  // Into a caller's buffer holding old bytes: the holes read as zeroes too.
  const into = new Uint8Array(3 * page).fill(0xee);
  const read = await exp.read(page, 3 * page, into);
  assert.equal(read, into);
  assert.deepEqual(read.subarray(0, 50), data.subarray(50, 100));
  assert.ok(read.subarray(data.length - 50).every((b) => b === 0));
  await exp.close();
});

Deno.test("memory export: trim frees whole pages, write zeroes honours noHole", async () => {
  const provider = new MemoryExportProvider([{ name: "a", sizeBytes: 4 * page }]);
  const exp = await provider.open("a");
  await exp.write(0, new Uint8Array(4 * page).fill(1), { fua: false });
  assert.equal(provider.allocatedPages, 4);
  await exp.trim(10, 2 * page);
  assert.equal(provider.allocatedPages, 3);
  const after = await exp.read(0, 4 * page);
  assert.ok(after.subarray(10, 10 + 2 * page).every((b) => b === 0));
  assert.equal(after[9], 1);
  assert.equal(after[10 + 2 * page], 1);
  await exp.writeZeroes(2 * page, 2 * page, { fua: false, noHole: true });
  assert.equal(provider.allocatedPages, 3);
  await exp.writeZeroes(2 * page, 2 * page, { fua: false, noHole: false });
  assert.equal(provider.allocatedPages, 1);
  assert.ok((await exp.read(2 * page, 2 * page)).every((b) => b === 0));
  await exp.close();
});

Deno.test("memory export: ranges past the end are RangeErrors", async () => {
  const provider = new MemoryExportProvider([{ name: "a", sizeBytes: 100 }]);
  const exp = await provider.open("a");
  await assert.rejects(() => exp.read(50, 51), RangeError);
  await assert.rejects(() => exp.write(100, new Uint8Array(1), { fua: true }), RangeError);
  await exp.close();
});

Deno.test("memory provider: default export, not found, read-only, in use, open count", async () => {
  const provider = new MemoryExportProvider([
    { name: "first", sizeBytes: 10 },
    { name: "ro", sizeBytes: 10, readOnly: true },
    { name: "solo", sizeBytes: 10, exclusive: true, multiConn: false },
  ]);
  assert.deepEqual(await provider.list(), ["first", "ro", "solo"]);
  const byDefault = await provider.open("");
  assert.equal(byDefault.name, "first");
  await assert.rejects(() => provider.open("nope"), ExportNotFoundError);
  const ro = await provider.open("ro");
  assert.equal(ro.readOnly, true);
  await assert.rejects(() => ro.write(0, new Uint8Array(1), { fua: false }), {
    name: "ReadOnlyError",
  });
  const solo = await provider.open("solo");
  assert.equal(solo.multiConn, false);
  await assert.rejects(() => provider.open("solo"), { name: "VolumeInUseError" });
  assert.equal(provider.openCount, 3);
  await Promise.all([byDefault.close(), ro.close(), solo.close(), solo.close()]);
  assert.equal(provider.openCount, 0);
  await assert.rejects(() => solo.read(0, 1), { name: "ClosedError" });
  await (await provider.open("solo")).close();
});

Deno.test("MemoryExport.blockStatus(): unallocated pages are holes that read as zeros", async () => {
  const provider = new MemoryExportProvider([{
    name: "disk",
    sizeBytes: 4 * MEMORY_EXPORT_PAGE_BYTES,
  }]);
  const exp = await provider.open("disk");
  await exp.write(MEMORY_EXPORT_PAGE_BYTES + 5, new Uint8Array([1]), { fua: false });
  const hole = NBD_STATE_HOLE | NBD_STATE_ZERO;
  assert.deepEqual(await exp.blockStatus!(100, 3 * MEMORY_EXPORT_PAGE_BYTES), [
    { lengthBytes: MEMORY_EXPORT_PAGE_BYTES - 100, flags: hole },
    { lengthBytes: MEMORY_EXPORT_PAGE_BYTES, flags: 0 },
    { lengthBytes: MEMORY_EXPORT_PAGE_BYTES + 100, flags: hole },
  ]);
  await exp.trim(MEMORY_EXPORT_PAGE_BYTES, MEMORY_EXPORT_PAGE_BYTES);
  assert.deepEqual(await exp.blockStatus!(0, 4 * MEMORY_EXPORT_PAGE_BYTES), [
    { lengthBytes: 4 * MEMORY_EXPORT_PAGE_BYTES, flags: hole },
  ]);
  await exp.close();
});
