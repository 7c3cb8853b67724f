/**
 * Blockset specs: the text form of a layer stack, outermost first, such as
 * `crc,base` (the default) or `crc,rep=3,base`. Kinds are case-insensitive;
 * `r` is short for `rep`. The innermost layer must be `base`, and `base` may
 * appear only there.
 *
 * @module
 */
import { REPLICAS_MAX } from "../constants.ts";
import { LayerKind } from "./layer.ts";
import { REP_DEFAULT } from "./rep_layer.ts";

/** One parsed layer of a spec. */
export interface LayerSpec {
  kind: LayerKind;
  /** Copies, for `rep`. */
  replication?: number;
}

/**
 * Parses a blockset spec. A spec without `base` gets it appended, as
 * `torusctl init --block-spec crc` did in the original.
 *
 * @throws {SyntaxError} on an unknown kind, bad options or a misplaced `base`.
 * @example Usage
 * ```ts
 * import { parseBlockSpec, formatBlockSpec } from "./spec.ts";
 * if (formatBlockSpec(parseBlockSpec("CRC,r=3")) !== "crc,rep=3,base") throw new Error("wrong");
 * ```
 */
export function parseBlockSpec(text: string): LayerSpec[] {
  const items = text.split(",").map((item) => item.trim()).filter((item) => item !== "");
  if (items.length === 0) throw new SyntaxError(`Cannot parse block spec "${text}": it is empty`);
  const layers = items.map((item) => parseLayer(text, item));
  if (layers.at(-1)!.kind !== LayerKind.base) layers.push({ kind: LayerKind.base });
  if (layers.slice(0, -1).some((layer) => layer.kind === LayerKind.base)) {
    throw new SyntaxError(`Cannot parse block spec "${text}": "base" must be the last layer`);
  }
  return layers;
}

function parseLayer(text: string, item: string): LayerSpec {
  const [name, option, ...rest] = item.split("=");
  const kind = name!.toLowerCase();
  if (rest.length > 0) {
    throw new SyntaxError(`Cannot parse block spec "${text}": bad item "${item}"`);
  }
  if (kind === "base" || kind === "crc") {
    if (option !== undefined) {
      throw new SyntaxError(`Cannot parse block spec "${text}": "${kind}" takes no option`);
    }
    return { kind: LayerKind[kind] };
  }
  if (kind === "rep" || kind === "r") {
    const replication = option === undefined ? REP_DEFAULT : Number(option);
    if (!Number.isInteger(replication) || replication < 1 || replication > REPLICAS_MAX) {
      throw new SyntaxError(
        `Cannot parse block spec "${text}": rep must be between 1 and ${REPLICAS_MAX}: current value is ${option}`,
      );
    }
    return { kind: LayerKind.rep, replication };
  }
  throw new SyntaxError(
    `Cannot parse block spec "${text}": unknown layer "${name}" (expected base, crc or rep=N)`,
  );
}

/** Formats a parsed spec back to text. */
export function formatBlockSpec(layers: LayerSpec[]): string {
  return layers.map((layer) => {
    switch (layer.kind) {
      case LayerKind.base:
        return "base";
      case LayerKind.crc:
        return "crc";
      case LayerKind.rep:
        return `rep=${layer.replication ?? REP_DEFAULT}`;
    }
  }).join(",");
}
