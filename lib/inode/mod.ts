/**
 * INodes stored as blocks: an INode (a `models.INode`, one version of a
 * file) is serialized and written as blocks of type INode at
 * (volume, inode, 1..n), as in the original Torus. {@linkcode INodeStore}
 * reads and writes them through a block store.
 *
 * @module
 */
export {
  decodeINode,
  encodeINode,
  INODE_SIZE_BYTES_MAX,
  type INodeRecord,
  INodeStore,
  inodeStoredBytes,
} from "./inode_store.ts";
