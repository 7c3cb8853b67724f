import assert from "node:assert/strict";
import { run } from "./_cli.ts";

/** A small run: 16384 blocks of 4 KiB. */
const SMALL = ["--total-data", "64MiB", "--block-size", "4KiB", "--nodes", "4", "--delta", "1"];

function figure(stdout: string, label: string): string {
  const match = new RegExp(`^${label}:\\s+(.+)$`, "m").exec(stdout);
  assert.ok(match, `no "${label}" in:\n${stdout}`);
  return match[1]!;
}

function percentSent(stdout: string): number {
  return Number(figure(stdout, "Percent sent").replace("%", ""));
}

Deno.test("ringtool: 4 -> 5 nodes, ketama sends about the new node's fifth, mod far more", async () => {
  const ketama = await run("ringtool", [...SMALL, "--ring", "ketama"]);
  assert.equal(ketama.code, 0, ketama.stderr);
  assert.equal(ketama.stderr, "");
  assert.match(ketama.stdout, /^ringtool: ketama ring, 4 -> 5 nodes, replication 2 -> 2, seed 1\n/);
  assert.match(ketama.stdout, /16384 unique blocks/);
  assert.match(ketama.stdout, /^NODE\s+BLOCKS BEFORE\s+SIZE BEFORE\s+BLOCKS AFTER\s+SIZE AFTER$/m);
  // Four nodes before, five after, the new one with nothing before.
  const nodes = ketama.stdout.match(/^[0-9a-f]{8}-[0-9a-f-]{27}\s.*$/gm)!;
  assert.equal(nodes.length, 5);
  assert.match(nodes[4]!, /^\S+\s+-\s+-\s+\d+/);
  assert.match(ketama.stdout, /^total\s+32768\s+128 MiB\s+32768\s+128 MiB$/m);
  const kept = Number(figure(ketama.stdout, "Blocks kept"));
  const sent = Number(figure(ketama.stdout, "Blocks sent"));
  assert.equal(kept + sent, 32768);
  const ketamaPercent = percentSent(ketama.stdout);
  assert.ok(ketamaPercent > 14 && ketamaPercent < 28, `ketama sent ${ketamaPercent}%`);
  assert.match(figure(ketama.stdout, "Ideal traffic"), /^26 MiB \(20\.00%/);

  const mod = await run("ringtool", [...SMALL, "--ring", "mod"]);
  assert.equal(mod.code, 0, mod.stderr);
  const modPercent = percentSent(mod.stdout);
  assert.ok(modPercent > 50, `mod sent ${modPercent}%`);
  assert.ok(modPercent > 2 * ketamaPercent);
});

Deno.test("ringtool: removing a node with --delta -1, and the same seed prints the same figures", async () => {
  const args = [...SMALL, "--nodes", "5", "--delta", "-1", "--seed", "7"];
  const first = await run("ringtool", args);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /5 -> 4 nodes/);
  assert.match(figure(first.stdout, "Ideal traffic"), /\(20\.00%/);
  const second = await run("ringtool", args);
  assert.equal(second.stdout, first.stdout);
});

Deno.test("ringtool: bad flags and values are one line on stderr and exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["--nodes", "abc"], /--nodes "abc": expected an integer/],
    [["--block-size", "12XB"], /Cannot parse size "12XB"/],
    [["--total-data", "lots"], /Cannot parse size "lots"/],
    [["--ring", "chord"], /ring type "chord"/],
    [["--nodes", "0"], /--nodes 0/],
    [["--nodes", "2", "--delta", "-2"], /--delta -2/],
    [["--rewrite-edge", "x"], /--rewrite-edge "x"/],
    [["--ring", "single"], /single ring/],
    [["--frobnicate"], /frobnicate/],
    [["extra"], /usage: ringtool/],
  ];
  for (const [args, pattern] of cases) {
    const result = await run("ringtool", [...SMALL, ...args]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.equal(result.stdout, "");
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.match(result.stderr, /^ringtool: /);
    assert.match(result.stderr, pattern);
  }
  const help = await run("ringtool", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--ring TYPE .*\(default "ketama"\)/);
});
