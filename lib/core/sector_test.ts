import assert from "node:assert/strict";
import { BLOCK_SIZE_BYTES_MAX, BLOCK_SIZE_BYTES_MIN } from "../constants.ts";
import { checkNewBlockSize, firstBadSector, sectorCrcs } from "./sector.ts";

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

Deno.test("firstBadSector() names the first sector that fails its CRC, -1 when none does", () => {
  const sector = 4096;
  const block = Uint8Array.from({ length: 8 * sector }, (_, i) => (i * 31 + (i >> 12)) & 0xff);
  const crcs = sectorCrcs(block, block.length);
  assert.equal(firstBadSector(block, sector, crcs, 0), -1);
  assert.equal(firstBadSector(block.subarray(2 * sector, 5 * sector), sector, crcs, 2), -1);
  assert.equal(firstBadSector(block.subarray(3 * sector, 4 * sector), sector, crcs, 3), -1);
  // The right bytes checked against the wrong sectors' CRCs fail.
  assert.equal(firstBadSector(block.subarray(2 * sector, 5 * sector), sector, crcs, 3), 3);
  const damaged = block.slice();
  damaged[6 * sector + 17]! ^= 1;
  damaged[7 * sector]! ^= 0x80;
  assert.equal(firstBadSector(damaged, sector, crcs, 0), 6);
  assert.equal(firstBadSector(damaged.subarray(7 * sector), sector, crcs, 7), 7);
  assert.equal(firstBadSector(damaged.subarray(0, 6 * sector), sector, crcs, 0), -1);
  // Two sectors swapped: each is intact, neither is where its CRC says.
  const swapped = block.slice(0, 2 * sector);
  swapped.set(block.subarray(sector, 2 * sector), 0);
  swapped.set(block.subarray(0, sector), sector);
  assert.equal(firstBadSector(swapped, sector, crcs, 0), 0);
  // Sectors without a CRC fail: the first of them is named.
  assert.equal(firstBadSector(block.subarray(0, 3 * sector), sector, crcs.subarray(0, 2), 0), 2);
  assert.equal(firstBadSector(block.subarray(7 * sector), sector, crcs, 8), 8);
});
