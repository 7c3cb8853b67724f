import assert from "node:assert/strict";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { sectorCrcs } from "../core/sector.ts";
import { BlockCorruptError } from "../errors.ts";
import { Prng } from "../prng.ts";
import {
  checkCallTimeout,
  checkReadRange,
  checkWriteLength,
  checkWriteRange,
  verifyRead,
  verifyWrittenSectors,
} from "./client_checks.ts";

const BLOCK = 16384;
const SECTOR = 4096;
const ref = new BlockRef(1, BlockType.data, 2, 3);
const ADDRESS = "mem://peer";

Deno.test("checkCallTimeout: a finite positive number of milliseconds", () => {
  assert.equal(checkCallTimeout(1), 1);
  assert.equal(checkCallTimeout(0.5), 0.5);
  for (const bad of [0, -1, NaN, Infinity, -Infinity]) {
    assert.throws(() => checkCallTimeout(bad), RangeError, `timeout ${bad}`);
  }
});

Deno.test("checkReadRange: the range inside the block, widened to whole sectors", () => {
  assert.deepEqual(checkReadRange(BLOCK, undefined), {
    wanted: { offsetBytes: 0, lengthBytes: BLOCK },
    aligned: { offsetBytes: 0, lengthBytes: BLOCK },
  });
  assert.deepEqual(checkReadRange(BLOCK, { offsetBytes: 4095, lengthBytes: 2 }), {
    wanted: { offsetBytes: 4095, lengthBytes: 2 },
    aligned: { offsetBytes: 0, lengthBytes: 2 * SECTOR },
  });
  assert.deepEqual(checkReadRange(BLOCK, { offsetBytes: BLOCK, lengthBytes: 0 }), {
    wanted: { offsetBytes: BLOCK, lengthBytes: 0 },
    aligned: { offsetBytes: BLOCK, lengthBytes: 0 },
  });
  // Blocks smaller than a sector are one sector.
  assert.deepEqual(checkReadRange(256, { offsetBytes: 10, lengthBytes: 5 }).aligned, {
    offsetBytes: 0,
    lengthBytes: 256,
  });
  for (
    const bad of [
      { offsetBytes: BLOCK - 1, lengthBytes: 2 },
      { offsetBytes: -1, lengthBytes: 1 },
      { offsetBytes: 0.5, lengthBytes: 1 },
      { offsetBytes: 0, lengthBytes: BLOCK + 1 },
      { offsetBytes: 2 ** 53, lengthBytes: 1 },
    ]
  ) {
    assert.throws(() => checkReadRange(BLOCK, bad), RangeError, JSON.stringify(bad));
  }
});

Deno.test("checkWriteLength and checkWriteRange: inside the block, a u32 digest", () => {
  checkWriteLength(BLOCK, ref, BLOCK);
  checkWriteLength(BLOCK, ref, 0);
  assert.throws(() => checkWriteLength(BLOCK, ref, BLOCK + 1), RangeError);
  checkWriteRange(BLOCK, BLOCK - 1, 1, undefined);
  checkWriteRange(BLOCK, 0, BLOCK, 0);
  checkWriteRange(BLOCK, 0, 1, 0xffff_ffff);
  assert.throws(() => checkWriteRange(BLOCK, BLOCK - 1, 2, undefined), RangeError);
  assert.throws(() => checkWriteRange(BLOCK, -1, 1, undefined), RangeError);
  for (const digest of [-1, 2 ** 32, 1.5, NaN]) {
    assert.throws(() => checkWriteRange(BLOCK, 0, 1, digest), RangeError, `digest ${digest}`);
  }
});

Deno.test("verifyRead: checks every returned sector, then cuts out the range asked for", () => {
  const block = new Prng(1).fill(new Uint8Array(BLOCK));
  const crcs = sectorCrcs(block, BLOCK);
  const { wanted, aligned } = checkReadRange(BLOCK, { offsetBytes: 5000, lengthBytes: 4000 });
  const sent = block.slice(aligned.offsetBytes, aligned.offsetBytes + aligned.lengthBytes);
  const read = verifyRead(ADDRESS, ref, BLOCK, wanted, aligned, sent, crcs);
  assert.deepEqual(read.data, block.subarray(5000, 9000));
  assert.equal(read.sectorCrcs, crcs);

  const all = checkReadRange(BLOCK, undefined);
  const whole = verifyRead(ADDRESS, ref, BLOCK, all.wanted, all.aligned, block, crcs);
  assert.equal(whole.data, block, "nothing to cut: no copy");

  // A flipped bit outside the range asked for, but in a sector sent, is caught too.
  const lie = sent.slice();
  lie[lie.length - 1]! ^= 1;
  assert.throws(
    () => verifyRead(ADDRESS, ref, BLOCK, wanted, aligned, lie, crcs),
    (error: unknown) =>
      error instanceof BlockCorruptError && /sector 2 of .* does not match/.test(error.message),
  );
  // CRCs missing for a sector sent: corrupt as well.
  assert.throws(
    () => verifyRead(ADDRESS, ref, BLOCK, wanted, aligned, sent, crcs.subarray(0, 2)),
    BlockCorruptError,
  );
});

Deno.test("verifyWrittenSectors: sectors the data covers whole must hold the data", () => {
  const block = new Prng(2).fill(new Uint8Array(BLOCK));
  const offsetBytes = 3000;
  const data = block.slice(offsetBytes, offsetBytes + 6000); // covers sector 1 whole only
  const crcs = sectorCrcs(block, BLOCK);
  verifyWrittenSectors(ADDRESS, ref, BLOCK, offsetBytes, data, crcs);
  const edge = crcs.slice();
  edge[0]! ^= 1; // an edge sector merges with bytes the client does not know: not checked
  edge[2]! ^= 1;
  verifyWrittenSectors(ADDRESS, ref, BLOCK, offsetBytes, data, edge);
  const covered = crcs.slice();
  covered[1]! ^= 1;
  assert.throws(
    () => verifyWrittenSectors(ADDRESS, ref, BLOCK, offsetBytes, data, covered),
    BlockCorruptError,
  );
});
