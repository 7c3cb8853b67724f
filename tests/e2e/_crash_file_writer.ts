/**
 * Test fixture: opens a volume in a data directory, writes and syncs a known
 * pattern, prints "SYNCED", then keeps writing another pattern without
 * syncing until it is killed.
 *
 * Usage: _crash_file_writer.ts DATA_DIR VOLUME
 *
 * @module
 */
import { openBlockFile } from "../../lib/block/block_volume.ts";
import { LocalNode } from "../../lib/node/local_node.ts";

const [dataDir, name] = Deno.args as [string, string];
const node = await LocalNode.open({ dataDir });
const context = await node.volumes();
const file = await openBlockFile(context, name, { lease: (await node.lease()).lease });
const size = file.sizeBytes;
await file.writeAt(pattern(size, 1), 0);
await file.sync();
console.log("SYNCED");
for (let round = 2;; round++) {
  const offset = (round * 7919 * 4096) % (size - 8192);
  await file.writeAt(pattern(8192, round), offset);
}

/** Deterministic bytes of `seed`. */
function pattern(length: number, seed: number): Uint8Array {
  const data = new Uint8Array(length);
  for (let i = 0; i < length; i++) data[i] = (i * 31 + seed * 17) & 0xff;
  return data;
}
