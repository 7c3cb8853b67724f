/**
 * The conformance suite every BlockStore implementation passes. Each
 * implementation's test file calls {@linkcode testBlockStore} in one line.
 *
 * @module
 */
import assertNode from "node:assert/strict";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { blockDigest, sectorCrcs } from "../core/sector.ts";
import { BlockCorruptError, BlockNotFoundError, ClosedError, OutOfSpaceError } from "../errors.ts";
import { Prng } from "../prng.ts";
import type { BlockStore } from "./block_store.ts";

/** Opens a fresh, empty store of `numBlocks` blocks of `blockSizeBytes`. */
export type OpenBlockStore = (
  options: { blockSizeBytes: number; numBlocks: number },
) => Promise<BlockStore>;

/** Hooks for behaviour only some stores can show. */
export interface ConformanceOptions {
  /** Corrupts one stored byte behind the store's back. */
  corrupt?: (store: BlockStore, ref: BlockRef, offsetBytes: number) => Promise<void>;
  /** Whether the store has `readBlockNow` (tested then; checked absent otherwise). */
  readsNow?: boolean;
}

function ref(inode: number, index: number, type: BlockType = BlockType.data): BlockRef {
  return new BlockRef(3, type, inode, index);
}

/** Registers the conformance tests for one implementation. */
export function testBlockStore(
  name: string,
  open: OpenBlockStore,
  options: ConformanceOptions = {},
): void {
  const prng = new Prng(0x70125);
  const blockSizeBytes = 16384;

  Deno.test(`${name}: writeBlock() then readBlock() returns the bytes, zero-padded`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 8 });
    const data = prng.fill(new Uint8Array(5000));
    const written = await store.writeBlock(ref(1, 1), data);
    const { data: back, sectorCrcs: crcs } = await store.readBlock(ref(1, 1));
    assertNode.equal(back.length, blockSizeBytes);
    assertNode.deepEqual(back.subarray(0, 5000), data);
    assertNode.ok(back.subarray(5000).every((b) => b === 0));
    assertNode.deepEqual(crcs, sectorCrcs(back, blockSizeBytes));
    assertNode.deepEqual(written, crcs, "writeBlock() returns the sector CRCs");
    const whole = prng.fill(new Uint8Array(blockSizeBytes));
    assertNode.deepEqual(
      await store.writeBlock(ref(1, 3), whole),
      sectorCrcs(whole, blockSizeBytes),
    );
    assertNode.equal(store.usedBlocks(), 2);
    assertNode.equal(await store.hasBlock(ref(1, 1)), true);
    assertNode.equal(await store.hasBlock(ref(1, 2)), false);
    await store.close();
  });

  Deno.test(`${name}: writeBlock() at an offset stores zeros around the data`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 8 });
    const old = prng.fill(new Uint8Array(blockSizeBytes));
    await store.writeBlock(ref(1, 1), old);
    const fits: [number, number][] = [[1, blockSizeBytes - 1], [5000, 3000], [4096, 0]];
    for (const [offsetBytes, lengthBytes] of fits) {
      const data = prng.fill(new Uint8Array(lengthBytes));
      const written = await store.writeBlock(ref(1, 1), data, offsetBytes);
      const expected = new Uint8Array(blockSizeBytes);
      expected.set(data, offsetBytes);
      const { data: back, sectorCrcs: crcs } = await store.readBlock(ref(1, 1));
      assertNode.deepEqual(back, expected, `${lengthBytes} bytes at ${offsetBytes}`);
      assertNode.deepEqual(crcs, sectorCrcs(expected, blockSizeBytes));
      assertNode.deepEqual(written, crcs, "writeBlock() returns the sector CRCs");
    }
    const misfits: [number, number][] = [[-1, 10], [blockSizeBytes - 9, 10], [0.5, 1]];
    for (const [offsetBytes, lengthBytes] of misfits) {
      await assertNode.rejects(
        store.writeBlock(ref(1, 2), new Uint8Array(lengthBytes), offsetBytes),
        RangeError,
        `${lengthBytes} bytes at ${offsetBytes}`,
      );
    }
    assertNode.equal(await store.hasBlock(ref(1, 2)), false);
    assertNode.equal(store.usedBlocks(), 1);
    await store.close();
  });

  Deno.test(`${name}: readBlockNow() returns what readBlock() does, or null`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 4 });
    if (!options.readsNow) {
      assertNode.equal(store.readBlockNow, undefined, "declared without readBlockNow()");
      await store.close();
      return;
    }
    const data = prng.fill(new Uint8Array(blockSizeBytes));
    await store.writeBlock(ref(1, 1), data);
    let served = 0;
    for (const [offsetBytes, lengthBytes] of [[0, blockSizeBytes], [4096, 4096], [8192, 8192]]) {
      const range = { offsetBytes: offsetBytes!, lengthBytes: lengthBytes! };
      const into = new Uint8Array(range.lengthBytes);
      const now = store.readBlockNow!(ref(1, 1), range, into);
      if (now === null) continue;
      served++;
      const later = await store.readBlock(ref(1, 1), range);
      assertNode.deepEqual(into, later.data, `${lengthBytes} bytes at ${offsetBytes}`);
      assertNode.deepEqual(now.data, later.data);
      assertNode.deepEqual(now.sectorCrcs, later.sectorCrcs);
    }
    assertNode.ok(served > 0, "a block just written is read at once");
    const sector = { offsetBytes: 0, lengthBytes: 4096 };
    assertNode.equal(store.readBlockNow!(ref(1, 2), sector, new Uint8Array(4096)), null, "missing");
    assertNode.throws(
      () =>
        store.readBlockNow!(
          ref(1, 1),
          { offsetBytes: 0, lengthBytes: blockSizeBytes + 4096 },
          new Uint8Array(blockSizeBytes + 4096),
        ),
      RangeError,
    );
    await store.close();
    assertNode.equal(store.readBlockNow!(ref(1, 1), sector, new Uint8Array(4096)), null, "closed");
  });

  Deno.test(`${name}: data and INode blocks with equal numbers are distinct`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 8 });
    await store.writeBlock(ref(1, 1), new Uint8Array([1]));
    await store.writeBlock(ref(1, 1, BlockType.inode), new Uint8Array([2]));
    assertNode.equal((await store.readBlock(ref(1, 1))).data[0], 1);
    assertNode.equal((await store.readBlock(ref(1, 1, BlockType.inode))).data[0], 2);
    await store.close();
  });

  Deno.test(`${name}: readBlock() of a range returns that range`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 8 });
    const data = prng.fill(new Uint8Array(blockSizeBytes));
    await store.writeBlock(ref(1, 1), data);
    for (
      const [offsetBytes, lengthBytes] of [[0, 1], [4095, 2], [4096, 4096], [100, 9000]] as const
    ) {
      const { data: part } = await store.readBlock(ref(1, 1), { offsetBytes, lengthBytes });
      assertNode.deepEqual(part, data.subarray(offsetBytes, offsetBytes + lengthBytes));
    }
    await assertNode.rejects(
      store.readBlock(ref(1, 1), { offsetBytes: blockSizeBytes - 1, lengthBytes: 2 }),
      RangeError,
    );
    await store.close();
  });

  Deno.test(`${name}: writeBlockRange() updates bytes and sector CRCs in place`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 8 });
    const data = prng.fill(new Uint8Array(blockSizeBytes));
    await store.writeBlock(ref(1, 1), data);
    const patch = prng.fill(new Uint8Array(5000));
    const crcs = await store.writeBlockRange(ref(1, 1), 3000, patch);
    data.set(patch, 3000);
    const { data: back, sectorCrcs: readCrcs } = await store.readBlock(ref(1, 1));
    assertNode.deepEqual(back, data);
    assertNode.deepEqual(crcs, sectorCrcs(data, blockSizeBytes));
    assertNode.equal(blockDigest(readCrcs), blockDigest(crcs));
    assertNode.equal(store.usedBlocks(), 1);
    await assertNode.rejects(store.writeBlockRange(ref(9, 9), 0, patch), BlockNotFoundError);
    await assertNode.rejects(
      store.writeBlockRange(ref(1, 1), 0, patch, blockDigest(crcs) ^ 1),
      BlockCorruptError,
    );
    assertNode.deepEqual(
      (await store.readBlock(ref(1, 1))).data,
      data,
      "refused write changed nothing",
    );
    await store.writeBlockRange(ref(1, 1), 0, patch.subarray(0, 1), blockDigest(crcs));
    await store.close();
  });

  Deno.test(`${name}: copyBlock() copies with a patch and leaves the source alone`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 3 });
    const data = prng.fill(new Uint8Array(blockSizeBytes));
    await store.writeBlock(ref(1, 1), data);
    const sourceCrcs = (await store.readBlock(ref(1, 1))).sectorCrcs;
    // Unaligned at both ends, across a sector boundary; then aligned; then empty.
    for (
      const [at, length, target] of [[3000, 5000, ref(2, 1)], [4096, 8192, ref(2, 2)]] as const
    ) {
      const patch = prng.fill(new Uint8Array(length));
      const crcs = await store.copyBlock(ref(1, 1), target, at, patch, blockDigest(sourceCrcs));
      const expected = data.slice();
      expected.set(patch, at);
      const back = await store.readBlock(target);
      assertNode.deepEqual(back.data, expected);
      assertNode.deepEqual(crcs, sectorCrcs(expected, blockSizeBytes));
      assertNode.deepEqual(back.sectorCrcs, crcs);
    }
    assertNode.deepEqual((await store.readBlock(ref(1, 1))).data, data, "source unchanged");
    assertNode.equal(store.usedBlocks(), 3);
    // Full: a new ref does not fit; an existing one is replaced.
    await assertNode.rejects(
      store.copyBlock(ref(1, 1), ref(2, 3), 0, new Uint8Array(1)),
      OutOfSpaceError,
    );
    await store.copyBlock(ref(1, 1), ref(2, 2), 0, new Uint8Array(0));
    assertNode.deepEqual((await store.readBlock(ref(2, 2))).data, data);
    await assertNode.rejects(
      store.copyBlock(ref(9, 9), ref(2, 3), 0, new Uint8Array(1)),
      BlockNotFoundError,
    );
    await assertNode.rejects(
      store.copyBlock(ref(1, 1), ref(2, 1), 0, new Uint8Array(1), blockDigest(sourceCrcs) ^ 1),
      BlockCorruptError,
    );
    await assertNode.rejects(
      store.copyBlock(ref(1, 1), ref(1, 1), 0, new Uint8Array(1)),
      RangeError,
    );
    await assertNode.rejects(
      store.copyBlock(ref(1, 1), ref(2, 1), blockSizeBytes - 1, new Uint8Array(2)),
      RangeError,
    );
    assertNode.equal(store.usedBlocks(), 3);
    await store.close();
  });

  Deno.test(`${name}: writeBlock() of an existing ref replaces it`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 2 });
    await store.writeBlock(ref(1, 1), new Uint8Array([1]));
    await store.writeBlock(ref(1, 1), new Uint8Array([2]));
    assertNode.equal((await store.readBlock(ref(1, 1))).data[0], 2);
    assertNode.equal(store.usedBlocks(), 1);
    await store.close();
  });

  Deno.test(`${name}: readBlock() of a missing block throws BlockNotFoundError`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 2 });
    await assertNode.rejects(store.readBlock(ref(1, 1)), BlockNotFoundError);
    await store.close();
  });

  Deno.test(`${name}: a full store throws OutOfSpaceError and keeps its blocks`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 3 });
    for (let i = 1; i <= 3; i++) await store.writeBlock(ref(1, i), new Uint8Array([i]));
    await assertNode.rejects(store.writeBlock(ref(1, 4), new Uint8Array([4])), OutOfSpaceError);
    assertNode.equal(store.usedBlocks(), 3);
    for (let i = 1; i <= 3; i++) {
      assertNode.equal((await store.readBlock(ref(1, i))).data[0], i);
    }
    assertNode.equal(await store.deleteBlock(ref(1, 2)), true);
    assertNode.equal(await store.deleteBlock(ref(1, 2)), false);
    await store.writeBlock(ref(1, 4), new Uint8Array([4]));
    assertNode.equal((await store.readBlock(ref(1, 4))).data[0], 4);
    assertNode.equal(store.numBlocks(), 3);
    await store.close();
  });

  Deno.test(`${name}: writeBlock() longer than a block throws RangeError`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 2 });
    await assertNode.rejects(
      store.writeBlock(ref(1, 1), new Uint8Array(blockSizeBytes + 1)),
      RangeError,
    );
    assertNode.equal(store.usedBlocks(), 0);
    await store.close();
  });

  Deno.test(`${name}: blockRefs() lists every stored ref`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 16 });
    const refs = [ref(1, 1), ref(1, 2), ref(2, 1, BlockType.inode)];
    for (const r of refs) await store.writeBlock(r, new Uint8Array([1]));
    await store.deleteBlock(ref(1, 2));
    const keys = store.blockRefs().map((r) => r.key()).sort();
    assertNode.deepEqual(keys, [ref(1, 1).key(), ref(2, 1, BlockType.inode).key()].sort());
    await store.flush();
    await store.close();
  });

  Deno.test(`${name}: a closed store throws ClosedError`, async () => {
    const store = await open({ blockSizeBytes, numBlocks: 2 });
    await store.close();
    await assertNode.rejects(store.readBlock(ref(1, 1)), ClosedError);
    await assertNode.rejects(store.writeBlock(ref(1, 1), new Uint8Array(1)), ClosedError);
  });

  if (options.corrupt) {
    const corrupt = options.corrupt;
    Deno.test(`${name}: a corrupt sector throws BlockCorruptError, never wrong bytes`, async () => {
      const store = await open({ blockSizeBytes, numBlocks: 2 });
      const data = prng.fill(new Uint8Array(blockSizeBytes));
      await store.writeBlock(ref(1, 1), data);
      await corrupt(store, ref(1, 1), 5000);
      await assertNode.rejects(store.readBlock(ref(1, 1)), BlockCorruptError);
      if (store.readBlockNow !== undefined) {
        const range = { offsetBytes: 4096, lengthBytes: 4096 };
        assertNode.throws(
          () => store.readBlockNow!(ref(1, 1), range, new Uint8Array(4096)),
          BlockCorruptError,
        );
      }
      await assertNode.rejects(
        store.readBlock(ref(1, 1), { offsetBytes: 4096, lengthBytes: 10 }),
        BlockCorruptError,
      );
      // Sectors that were not corrupted still read.
      const { data: head } = await store.readBlock(ref(1, 1), {
        offsetBytes: 0,
        lengthBytes: 4096,
      });
      assertNode.deepEqual(head, data.subarray(0, 4096));
      await assertNode.rejects(
        store.writeBlockRange(ref(1, 1), 4200, new Uint8Array(10)),
        BlockCorruptError,
      );
      // A copy refuses to merge with a corrupt sector. Elsewhere it either
      // refuses too, or keeps the sector corrupt (never laundered into a
      // valid checksum) and copies the rest intact.
      await assertNode.rejects(
        store.copyBlock(ref(1, 1), ref(2, 1), 4200, new Uint8Array(10)),
        BlockCorruptError,
      );
      let copied = true;
      try {
        await store.copyBlock(ref(1, 1), ref(2, 1), 0, new Uint8Array(100));
      } catch (error) {
        assertNode.ok(error instanceof BlockCorruptError, `${error}`);
        copied = false;
      }
      if (copied) {
        await assertNode.rejects(
          store.readBlock(ref(2, 1), { offsetBytes: 4096, lengthBytes: 10 }),
          BlockCorruptError,
        );
        const { data: tail } = await store.readBlock(ref(2, 1), {
          offsetBytes: 8192,
          lengthBytes: blockSizeBytes - 8192,
        });
        assertNode.deepEqual(tail, data.subarray(8192));
      }
      await store.close();
    });
  }
}
