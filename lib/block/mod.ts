/**
 * Block volumes: named, fixed-size files stored as blocks under INodes.
 *
 * - `block_volume.ts`: create, open, snapshot and restore a volume.
 * - `gc.ts`: {@linkcode collectGarbage}, which deletes blocks no INode or
 *   snapshot can still reach, and keeps a block whenever in doubt.
 * - `volume_exports.ts`: {@linkcode VolumeExports}, volumes as NBD exports.
 *
 * @module
 */
export {
  createBlockVolume,
  findSnapshot,
  loadINode,
  openBlockFile,
  openSnapshot,
  type OpenVolumeOptions,
  restoreSnapshot,
  type VolumeContext,
} from "./block_volume.ts";
export { collectGarbage, GcMarks, type GcResult, markLiveBlocks } from "./gc.ts";
export { VolumeExports, type VolumeExportsOptions } from "./volume_exports.ts";
