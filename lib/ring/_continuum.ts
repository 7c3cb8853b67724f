/**
 * The ketama hash continuum behind the `ketama` ring, with the placement
 * rules of the original Torus's hash ring library (serialx/hashring, the
 * algorithm of Python's `hash_ring`), so that the same members and weights
 * place every key where the original did:
 *
 * 1. With N nodes of total weight W, a node of weight w gets
 *    `floor(40 · N · w / W)` points. Point j of node `name` is
 *    `md5("<name>-<j>")`, which gives three keys: the little-endian u32s of
 *    digest bytes 0–4, 4–8 and 8–12.
 * 2. A lookup hashes the key to the little-endian u32 of `md5(key)[0..4]`,
 *    starts at the first continuum key strictly greater (wrapping to the
 *    first key), and walks clockwise collecting distinct nodes.
 *
 * The original let two nodes that hash a point to the same key race through
 * Go map order. Here the node whose name sorts last owns the key, so
 * placement never depends on iteration order.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { assert } from "../assert.ts";
import { md5FirstWord } from "./_md5.ts";

/** Points each node gets per node in the ring at average weight (ketama's 40). */
export const KETAMA_POINTS_PER_NODE = 40;
/** Continuum keys per point: one per 4 of the first 12 bytes of its MD5. */
export const KETAMA_KEYS_PER_POINT = 3;

/** A node of the continuum and its weight (0 gives it no points). */
export interface ContinuumNode {
  name: string;
  weight: number;
}

/** A sorted ring of hash keys, each owned by one node. */
export class Continuum {
  /** Distinct keys, ascending. */
  readonly #keys: Uint32Array;
  /** Owner of each key, as an index into the nodes given. */
  readonly #owners: Uint32Array;
  /** Lookup generation each node was last collected in, to skip repeats without allocating. */
  readonly #seen: Uint32Array;
  #generation = 0;

  /** Builds the continuum of `nodes` (names distinct, weights safe non-negative integers). */
  constructor(nodes: readonly ContinuumNode[]) {
    assert(new Set(nodes.map((node) => node.name)).size === nodes.length, "duplicate node");
    assert(nodes.every((node) => Number.isSafeInteger(node.weight) && node.weight >= 0));
    const totalWeight = Number(nodes.reduce((sum, node) => sum + BigInt(node.weight), 0n));
    // Later writers win a shared key, and nodes write in ascending name order.
    const order = nodes.map((_, index) => index).sort((x, y) =>
      nodes[x]!.name < nodes[y]!.name ? -1 : 1
    );
    const keys: number[] = [];
    const owners: number[] = [];
    for (const index of order) {
      const node = nodes[index]!;
      const points = totalWeight === 0 ? 0 : Math.floor(
        Number(BigInt(KETAMA_POINTS_PER_NODE * nodes.length) * BigInt(node.weight)) / totalWeight,
      );
      for (let j = 0; j < points; j++) {
        const digest = createHash("md5").update(`${node.name}-${j}`).digest();
        for (let k = 0; k < KETAMA_KEYS_PER_POINT; k++) {
          keys.push(digest.readUInt32LE(k * 4));
          owners.push(index);
        }
      }
    }
    // A stable sort keeps writing order among equal keys; the last one owns the key.
    const sorted = keys.map((_, i) => i).sort((x, y) => keys[x]! - keys[y]!);
    const uniqueKeys: number[] = [];
    const uniqueOwners: number[] = [];
    for (const i of sorted) {
      if (uniqueKeys.length > 0 && uniqueKeys[uniqueKeys.length - 1] === keys[i]) {
        uniqueOwners[uniqueOwners.length - 1] = owners[i]!;
      } else {
        uniqueKeys.push(keys[i]!);
        uniqueOwners.push(owners[i]!);
      }
    }
    this.#keys = Uint32Array.from(uniqueKeys);
    this.#owners = Uint32Array.from(uniqueOwners);
    this.#seen = new Uint32Array(nodes.length);
  }

  /** Number of distinct keys on the continuum. */
  get size(): number {
    return this.#keys.length;
  }

  /**
   * Up to `count` distinct nodes for `key`, in walking order, as indices into
   * the nodes the continuum was built from. Fewer when fewer nodes have
   * points; none when none has.
   */
  nodesFor(key: Uint8Array, count: number): number[] {
    const keys = this.#keys;
    const length = keys.length;
    const out: number[] = [];
    if (length === 0 || count <= 0) return out;
    const hash = md5FirstWord(key);
    // First key strictly greater than the hash; past the end wraps to 0.
    let low = 0;
    let high = length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (keys[middle]! > hash) high = middle;
      else low = middle + 1;
    }
    const start = low === length ? 0 : low;
    const generation = this.#nextGeneration();
    for (let step = 0; step < length && out.length < count; step++) {
      const owner = this.#owners[(start + step) % length]!;
      if (this.#seen[owner] !== generation) {
        this.#seen[owner] = generation;
        out.push(owner);
      }
    }
    return out;
  }

  #nextGeneration(): number {
    if (this.#generation === 0xffff_ffff) {
      this.#seen.fill(0);
      this.#generation = 0;
    }
    return ++this.#generation;
  }
}
