import assert from "node:assert/strict";
import { Continuum, type ContinuumNode, KETAMA_KEYS_PER_POINT } from "./_continuum.ts";

const encoder = new TextEncoder();

function lookup(nodes: ContinuumNode[], key: string, count: number): string[] {
  const continuum = new Continuum(nodes);
  return continuum.nodesFor(encoder.encode(key), count).map((index) => nodes[index]!.name);
}

function equal(...names: string[]): ContinuumNode[] {
  return names.map((name) => ({ name, weight: 1 }));
}

// Known answers of Python's hash_ring, which the original's hash ring library
// (serialx/hashring) checks itself against: placement is compatible only if
// these hold.
Deno.test("Continuum places keys as Python hash_ring and serialx/hashring do (equal weights)", () => {
  const abc = equal("a", "b", "c");
  const owners: Record<string, string[]> = {
    test: ["a", "b"],
    test1: ["b", "c"],
    test2: ["b", "a"],
    test3: ["c", "a"],
    test4: ["c", "b"],
    test5: ["a", "c"],
    aaaa: ["b", "a"],
    bbbb: ["a", "b"],
  };
  for (const [key, expected] of Object.entries(owners)) {
    assert.deepEqual(lookup(abc, key, 2), expected, key);
  }
  // Removing b moves only b's keys.
  const ac = equal("a", "c");
  assert.deepEqual(
    ["test", "test1", "test2", "test3", "test4", "test5", "aaaa", "bbbb"].map((key) =>
      lookup(ac, key, 1)[0]
    ),
    ["a", "c", "a", "c", "c", "a", "a", "a"],
  );
  // Adding d, e, f.
  assert.deepEqual(lookup(equal("a", "b", "c", "d"), "test1", 2), ["b", "d"]);
  assert.deepEqual(lookup(equal("a", "b", "c", "d", "e"), "bbbb", 2), ["e", "a"]);
  assert.deepEqual(lookup(equal("a", "b", "c", "d", "e", "f"), "test2", 2), ["f", "b"]);
});

Deno.test("Continuum places keys as Python hash_ring does (weights 1, 2, 1)", () => {
  const weighted = [{ name: "a", weight: 1 }, { name: "b", weight: 2 }, { name: "c", weight: 1 }];
  const first: Record<string, string> = {
    test: "b",
    test1: "b",
    test2: "b",
    test3: "c",
    test4: "b",
    test5: "b",
    aaaa: "b",
    bbbb: "a",
  };
  for (const [key, expected] of Object.entries(first)) {
    assert.equal(lookup(weighted, key, 1)[0], expected, key);
  }
  assert.deepEqual(lookup(weighted, "test3", 2), ["c", "b"]);
  assert.deepEqual(lookup(weighted, "bbbb", 2), ["a", "b"]);
});

Deno.test("Continuum wraps past its last key (one node: every key, including test14)", () => {
  const single = equal("a");
  for (const key of ["test", "test14", "test15", "test20"]) {
    assert.deepEqual(lookup(single, key, 3), ["a"], key);
  }
});

Deno.test("Continuum gives a node floor(40·N·w/W) points of 3 keys, and weight 0 none", () => {
  assert.equal(new Continuum(equal("a", "b", "c")).size, 3 * 40 * KETAMA_KEYS_PER_POINT);
  const skewed = new Continuum([{ name: "a", weight: 3 }, { name: "b", weight: 0 }]);
  assert.equal(skewed.size, 80 * KETAMA_KEYS_PER_POINT);
  assert.deepEqual(skewed.nodesFor(encoder.encode("x"), 2), [0]);
  assert.equal(new Continuum([]).nodesFor(encoder.encode("x"), 2).length, 0);
});

Deno.test("Continuum starts strictly after a key equal to the lookup hash", async () => {
  const { createHash } = await import("node:crypto");
  const nodes = equal("a", "b");
  // Every key of the continuum, by brute force.
  const all: { key: number; name: string }[] = [];
  for (const node of nodes) {
    for (let j = 0; j < 40; j++) {
      const digest = createHash("md5").update(`${node.name}-${j}`).digest();
      for (let k = 0; k < 3; k++) all.push({ key: digest.readUInt32LE(k * 4), name: node.name });
    }
  }
  all.sort((x, y) => x.key - y.key);
  const continuum = new Continuum(nodes);
  let checked = 0;
  for (let j = 0; j < 40; j++) {
    // The lookup of "a-j" hashes exactly onto a's first key of point j.
    const hash = createHash("md5").update(`a-${j}`).digest().readUInt32LE(0);
    const next = all.find((entry) => entry.key > hash) ?? all[0]!;
    assert.equal(nodes[continuum.nodesFor(encoder.encode(`a-${j}`), 1)[0]!]!.name, next.name);
    if (next.name === "b") checked++;
  }
  assert.ok(checked > 0, "some lookups land right before one of b's keys");
});
