/**
 * ringtool: simulate a ring membership change and print the data movement.
 * Thin wiring: flags here, the simulation in lib/ring/ring_sim.ts.
 *
 * @module
 */
import { type Command, type FlagSpec, print, runCommand } from "../lib/cli/command.ts";
import { renderTable } from "../lib/cli/table.ts";
import {
  describeRingSim,
  parseRingType,
  type RingBalance,
  type RingSimOptions,
  simulateRingChange,
} from "../lib/ring/mod.ts";
import { formatSize, parseSize } from "../lib/size.ts";

const FLAGS: Record<string, FlagSpec> = {
  ring: {
    type: "string",
    default: "ketama",
    description: "ring type: ketama, mod, single or empty",
    valueName: "TYPE",
  },
  rep: { type: "string", default: "2", description: "replication before", valueName: "N" },
  "rep-end": {
    type: "string",
    default: "0",
    description: "replication after (0: same as --rep)",
    valueName: "N",
  },
  nodes: { type: "string", default: "4", description: "nodes before", valueName: "N" },
  delta: {
    type: "string",
    default: "1",
    description: "nodes added, or removed when negative",
    valueName: "N",
  },
  "block-size": {
    type: "string",
    default: "256KiB",
    description: "block size",
    valueName: "SIZE",
  },
  "total-data": {
    type: "string",
    default: "1TiB",
    description: "data simulated",
    valueName: "SIZE",
  },
  "rewrite-edge": {
    type: "string",
    default: "40",
    description: "percentage of files rewritten by small random writes",
    valueName: "PERCENT",
  },
  seed: {
    type: "string",
    default: "1",
    description: "seed of the data and node uuids",
    valueName: "N",
  },
};

type Flags = Record<string, string | boolean | undefined>;

/** An integer flag. @throws {SyntaxError} */
function integerFlag(flags: Flags, name: string): number {
  const text = String(flags[name]);
  if (!/^\s*[+-]?\d+\s*$/.test(text)) {
    throw new SyntaxError(`Cannot parse --${name} "${text}": expected an integer`);
  }
  return Number(text);
}

/** A number flag. @throws {SyntaxError} */
function numberFlag(flags: Flags, name: string): number {
  const text = String(flags[name]);
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value)) {
    throw new SyntaxError(`Cannot parse --${name} "${text}": expected a number`);
  }
  return value;
}

function options(flags: Flags): RingSimOptions {
  return {
    ringType: parseRingType(String(flags.ring)),
    replication: integerFlag(flags, "rep"),
    replicationEnd: integerFlag(flags, "rep-end"),
    nodes: integerFlag(flags, "nodes"),
    delta: integerFlag(flags, "delta"),
    blockSizeBytes: parseSize(String(flags["block-size"])),
    totalDataBytes: parseSize(String(flags["total-data"])),
    rewriteEdgePercent: numberFlag(flags, "rewrite-edge"),
    seed: integerFlag(flags, "seed"),
  };
}

function simulate(flags: Flags): void {
  const sim = options(flags);
  const result = simulateRingChange(sim);
  const blockSize = sim.blockSizeBytes;
  const size = (blocks: number) => formatSize(Math.round(blocks) * blockSize);
  print(`ringtool: ${describeRingSim(sim)}`);
  print(
    `Data: ${formatSize(sim.totalDataBytes)} in ${
      formatSize(blockSize)
    } blocks: ${result.uniqueBlocks} unique blocks in ${result.files} files (${result.rewrittenFiles} rewritten)`,
  );
  print();

  const uuids = [
    ...new Set([...result.before.blocksByNode.keys(), ...result.after.blocksByNode.keys()]),
  ];
  const cell = (balance: RingBalance, uuid: string) => {
    const blocks = balance.blocksByNode.get(uuid);
    return blocks === undefined ? ["-", "-"] : [String(blocks), size(blocks)];
  };
  const summary = (label: string, pick: (balance: RingBalance) => number, digits: number) => [
    label,
    pick(result.before).toFixed(digits),
    size(pick(result.before)),
    pick(result.after).toFixed(digits),
    size(pick(result.after)),
  ];
  print(renderTable(
    ["node", "blocks before", "size before", "blocks after", "size after"],
    [
      ...uuids.map((uuid) => [uuid, ...cell(result.before, uuid), ...cell(result.after, uuid)]),
      summary("total", (b) => b.totalBlocks, 0),
      summary("mean", (b) => b.meanBlocks, 1),
      summary("stddev", (b) => b.stddevBlocks, 1),
    ],
  ));
  print();

  const idealPercent = result.blocksKept + result.blocksSent === 0
    ? 0
    : (result.idealTrafficBytes * 100) / ((result.blocksKept + result.blocksSent) * blockSize);
  const figures: [string, string][] = [
    ["Blocks kept:", String(result.blocksKept)],
    ["Blocks sent:", String(result.blocksSent)],
    ["Percent sent:", `${result.percentSent.toFixed(2)}%`],
    ["Network traffic:", formatSize(result.trafficBytes)],
    [
      "Ideal traffic:",
      `${formatSize(result.idealTrafficBytes)} (${
        idealPercent.toFixed(2)
      }%, a perfectly even ring)`,
    ],
  ];
  const width = Math.max(...figures.map(([label]) => label.length));
  for (const [label, value] of figures) print(`${label.padEnd(width)}  ${value}`);
}

const ringtool: Command = {
  name: "ringtool",
  summary: "simulate a ring change and measure the data it moves",
  flags: FLAGS,
  run: async ({ flags }) => simulate(flags),
};

/**
 * Joins `--flag -N` into `--flag=-N`: the flag parser would read `-N` as a
 * flag and reject `--delta -1` as ambiguous.
 */
function joinNegativeValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    const name = arg.startsWith("--") ? arg.slice(2) : "";
    if (FLAGS[name]?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

if (import.meta.main) {
  Deno.exit(await runCommand(ringtool, joinNegativeValues(Deno.args)));
}
