/**
 * Blocksets: how a file version maps its block indices to stored blocks.
 *
 * A blockset is a stack of layers named by a spec, outermost first
 * (`crc,base` by default). `base` holds the list of block refs, `crc` keeps a
 * digest per block and refuses any block that does not match it, and `rep=N`
 * keeps N copies under distinct refs. Blocks are immutable once an INode that
 * references them is committed: within an open write session a block written
 * in that session changes in place, and any other block is copied on write.
 *
 * The layers talk to a {@linkcode BlockStore} and are marshalled into the
 * INode as `models.BlockLayer`s.
 *
 * @module
 */
export { Blockset } from "./blockset.ts";
export { formatBlockSpec, type LayerSpec, parseBlockSpec } from "./spec.ts";
export { LayerKind, type MarshalledLayer } from "./layer.ts";
export { crcFailures } from "./crc_layer.ts";
