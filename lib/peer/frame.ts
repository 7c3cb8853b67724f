/**
 * The peer protocol's wire format (`Documentation/peer_protocol.md`) as pure,
 * synchronous encoders, decoders and checks: the hello exchanged once per
 * connection, the fixed frame header of every request and reply, and the
 * payload layouts. Nothing here touches a socket.
 *
 * All integers are little-endian, like every Torus byte layout. Bytes that
 * cannot be a frame (a wrong magic, a header checksum that does not match)
 * throw `SyntaxError`; a well-framed request that asks for something invalid
 * is described by {@linkcode parseRequest} so the server can refuse it and
 * keep the connection.
 *
 * @module
 */
import { assert } from "../assert.ts";
import { BLOCK_REF_SIZE_BYTES, BlockRef } from "../core/block_ref.ts";
import { BLOCK_SIZE_BYTES_MAX, BLOCK_SIZE_BYTES_MIN, SECTOR_SIZE_BYTES } from "../constants.ts";
import { crc32 } from "../core/crc32.ts";
import { sectorSizeBytes, sectorsPerBlock } from "../core/sector.ts";
import type { BlockRange } from "../storage/block_store.ts";

// ---------------------------------------------------------------------------
// Constants

/** The 8 bytes that open every hello: ASCII `TORUSTDP`. */
export const PEER_MAGIC: Uint8Array = new TextEncoder().encode("TORUSTDP");
/** The protocol version this code speaks best. */
export const PEER_PROTOCOL_VERSION = 1;
/** The oldest protocol version this code still speaks. */
export const PEER_PROTOCOL_VERSION_MIN = 1;
/** Size of a hello, each way. */
export const PEER_HELLO_BYTES = 44;
/** Size of a frame header (requests and replies alike). */
export const PEER_FRAME_HEADER_BYTES = 56;
/** Size of a node uuid on the wire. */
export const PEER_NODE_UUID_BYTES = 16;
/**
 * Most refs in one `HAS_BLOCKS` request (a 96 KiB payload). The client splits
 * longer lists; the original TDP allowed 255.
 */
export const PEER_HAS_BLOCKS_BATCH_MAX = 4096;
/** Longest error message in a reply, in bytes of UTF-8; longer ones are cut. */
export const PEER_ERROR_MESSAGE_BYTES_MAX = 512;
/** Largest value of a u32 field. */
const U32_MAX = 0xffff_ffff;

/** Request operations. */
export const PeerOp = {
  /** Keepalive; no arguments, an empty reply. */
  ping: 0,
  /** Reads whole sectors of a block; the reply carries the block's sector CRCs and the bytes. */
  read: 1,
  /** Stores a whole block (zero-padded). */
  write: 2,
  /** Overwrites a range of a stored block; the reply carries the new sector CRCs. */
  writeRange: 3,
  /** Deletes a block; the reply says whether it was stored. */
  delete: 4,
  /** Which of a list of refs are stored; the reply is a bitset. */
  hasBlocks: 5,
  /** Makes every acknowledged write durable. */
  flush: 6,
} as const;
/** A {@linkcode PeerOp} value. */
export type PeerOp = typeof PeerOp[keyof typeof PeerOp];

/** Request flag of `WRITE_RANGE`: `arg` holds the digest the block must have. */
export const PEER_FLAG_EXPECT_DIGEST = 1;
/** Every request flag this version knows. */
export const PEER_FLAGS_KNOWN = PEER_FLAG_EXPECT_DIGEST;

/** Reply status codes. */
export const PeerStatus = {
  ok: 0,
  /** `BlockNotFoundError`. */
  notFound: 1,
  /** `BlockCorruptError`. */
  corrupt: 2,
  /** `OutOfSpaceError`. */
  outOfSpace: 3,
  /** The request was refused as invalid (`RangeError` at the client). */
  badRequest: 4,
  /** The store failed otherwise (`PeerUnavailableError` at the client). */
  internal: 5,
  /** The server is closing and takes no new requests (`PeerUnavailableError`). */
  shuttingDown: 6,
  /** The request's payload failed its checksum: damaged in transit (`PeerUnavailableError`). */
  damaged: 7,
} as const;
/** A {@linkcode PeerStatus} value. */
export type PeerStatus = typeof PeerStatus[keyof typeof PeerStatus];

/** Status codes of the server's hello. */
export const HelloStatus = {
  ok: 0,
  /** No protocol version in the client's range; the server's range is in its hello. */
  versionUnsupported: 1,
  /** The nodes use different block sizes; the server's is in its hello. */
  blockSizeMismatch: 2,
  /** The server is at its connection limit. */
  busy: 3,
  /** The server is closing. */
  shuttingDown: 4,
} as const;
/** A {@linkcode HelloStatus} value. */
export type HelloStatus = typeof HelloStatus[keyof typeof HelloStatus];

/** The name of an op, for messages. */
export function opName(op: number): string {
  switch (op) {
    case PeerOp.ping:
      return "PING";
    case PeerOp.read:
      return "READ";
    case PeerOp.write:
      return "WRITE";
    case PeerOp.writeRange:
      return "WRITE_RANGE";
    case PeerOp.delete:
      return "DELETE";
    case PeerOp.hasBlocks:
      return "HAS_BLOCKS";
    case PeerOp.flush:
      return "FLUSH";
    default:
      return `op ${op}`;
  }
}

// ---------------------------------------------------------------------------
// Hello

/**
 * The first message each way. The client sends its hello, the server answers
 * with its own (status `ok`, or why it refuses, then it closes).
 *
 * ```
 * [0..8)   magic "TORUSTDP"        [8..10)  version min u16   [10..12) version max u16
 * [12..14) status u16              [14..16) flags u16 (0)     [16..20) block size u32
 * [20..24) requests in flight u32  [24..40) node uuid         [40..44) CRC-32 of [0..40)
 * ```
 */
export interface Hello {
  /** Oldest version the sender speaks; the server's reply puts the chosen version in both. */
  versionMin: number;
  /** Newest version the sender speaks. */
  versionMax: number;
  /** {@linkcode HelloStatus}; always `ok` from a client. */
  status: number;
  /** The sender's cluster block size. */
  blockSizeBytes: number;
  /** Most requests the sender allows in flight on the connection (the server's is binding). */
  requestsInFlightMax: number;
  /** The sender's node uuid, 16 bytes, all zero when anonymous. */
  nodeUuid: Uint8Array;
}

/** Encodes a hello. */
export function encodeHello(hello: Hello): Uint8Array {
  assert(hello.nodeUuid.length === PEER_NODE_UUID_BYTES, "node uuid must be 16 bytes");
  const bytes = new Uint8Array(PEER_HELLO_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(PEER_MAGIC, 0);
  view.setUint16(8, hello.versionMin, true);
  view.setUint16(10, hello.versionMax, true);
  view.setUint16(12, hello.status, true);
  view.setUint16(14, 0, true);
  view.setUint32(16, hello.blockSizeBytes, true);
  view.setUint32(20, hello.requestsInFlightMax, true);
  bytes.set(hello.nodeUuid, 24);
  view.setUint32(40, crc32(bytes.subarray(0, 40)), true);
  return bytes;
}

/**
 * Decodes a hello.
 *
 * @throws {SyntaxError} on a wrong length or magic, a checksum mismatch, or
 * nonzero flags or an empty version range.
 */
export function decodeHello(bytes: Uint8Array): Hello {
  if (bytes.length !== PEER_HELLO_BYTES) {
    throw new SyntaxError(`Cannot decode hello: ${bytes.length} bytes, not ${PEER_HELLO_BYTES}`);
  }
  for (let i = 0; i < PEER_MAGIC.length; i++) {
    if (bytes[i] !== PEER_MAGIC[i]) throw new SyntaxError("Cannot decode hello: wrong magic");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(40, true) !== crc32(bytes.subarray(0, 40))) {
    throw new SyntaxError("Cannot decode hello: checksum mismatch");
  }
  const versionMin = view.getUint16(8, true);
  const versionMax = view.getUint16(10, true);
  if (versionMin > versionMax) {
    throw new SyntaxError(`Cannot decode hello: version range [${versionMin}, ${versionMax}]`);
  }
  if (view.getUint16(14, true) !== 0) throw new SyntaxError("Cannot decode hello: unknown flags");
  return {
    versionMin,
    versionMax,
    status: view.getUint16(12, true),
    blockSizeBytes: view.getUint32(16, true),
    requestsInFlightMax: view.getUint32(20, true),
    nodeUuid: bytes.slice(24, 40),
  };
}

/**
 * The version both sides speak: the newest in both ranges, or null when the
 * ranges do not meet.
 */
export function chooseVersion(
  ours: { versionMin: number; versionMax: number },
  theirs: { versionMin: number; versionMax: number },
): number | null {
  const version = Math.min(ours.versionMax, theirs.versionMax);
  return version >= Math.max(ours.versionMin, theirs.versionMin) ? version : null;
}

/** The 16 bytes of a uuid in text form (`xxxxxxxx-xxxx-…`); all zero for `undefined`. */
export function encodeNodeUuid(uuid?: string): Uint8Array {
  const bytes = new Uint8Array(PEER_NODE_UUID_BYTES);
  if (uuid === undefined) return bytes;
  const hex = uuid.replaceAll("-", "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError(`Cannot use "${uuid}" as a node uuid`);
  for (let i = 0; i < PEER_NODE_UUID_BYTES; i++) {
    bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  }
  return bytes;
}

/** The text form of a 16-byte uuid, or null when it is all zero (anonymous). */
export function decodeNodeUuid(bytes: Uint8Array): string | null {
  assert(bytes.length === PEER_NODE_UUID_BYTES, "node uuid must be 16 bytes");
  if (bytes.every((b) => b === 0)) return null;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

// ---------------------------------------------------------------------------
// Frame header

/**
 * The fixed header of every request and reply.
 *
 * ```
 * [0..4)   request id u32   [4] op u8   [5] flags u8   [6] status u8   [7] reserved (0)
 * [8..32)  block ref (24 B, core/block_ref.ts)
 * [32..36) offset u32       [36..40) length u32        [40..44) arg u32
 * [44..48) payload length   [48..52) payload CRC-32    [52..56) CRC-32 of [0..52)
 * ```
 */
export interface FrameHeader {
  /** Chosen by the client; the reply carries it back. */
  requestId: number;
  /** {@linkcode PeerOp}; a reply echoes its request's. */
  op: number;
  /** Request flags (`PEER_FLAG_*`); 0 in replies. */
  flags: number;
  /** {@linkcode PeerStatus} of a reply; 0 in requests. */
  status: number;
  /** Must be 0. */
  reserved: number;
  /** The encoded block ref (24 bytes); zero for ops without one. A reply echoes its request's. */
  ref: Uint8Array;
  /** Byte offset in the block. */
  offsetBytes: number;
  /** Byte length (`READ`) or ref count (`HAS_BLOCKS`). */
  lengthBytes: number;
  /** Per-op argument: expected digest, sector count, deleted flag. */
  arg: number;
  /** Bytes of payload after the header. */
  payloadBytes: number;
  /** CRC-32 of the payload (0 for an empty one). */
  payloadCrc: number;
}

/** 24 zero bytes: the ref of ops that have none. */
export const NO_REF: Uint8Array = new Uint8Array(BLOCK_REF_SIZE_BYTES);

/** A header with every field zero except those given. */
export function frameHeader(fields: Partial<FrameHeader> & { requestId: number; op: number }) {
  return {
    flags: 0,
    status: 0,
    reserved: 0,
    ref: NO_REF,
    offsetBytes: 0,
    lengthBytes: 0,
    arg: 0,
    payloadBytes: 0,
    payloadCrc: 0,
    ...fields,
  } satisfies FrameHeader;
}

function checkU32(name: string, value: number): void {
  assert(Number.isInteger(value) && value >= 0 && value <= U32_MAX, `${name} ${value} is not u32`);
}

/** Encodes a header (asserting every field fits). */
export function encodeFrameHeader(header: FrameHeader): Uint8Array {
  assert(header.ref.length === BLOCK_REF_SIZE_BYTES, "ref must be 24 bytes");
  for (const key of ["requestId", "offsetBytes", "lengthBytes", "arg", "payloadBytes"] as const) {
    checkU32(key, header[key]);
  }
  checkU32("payloadCrc", header.payloadCrc);
  const bytes = new Uint8Array(PEER_FRAME_HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, header.requestId, true);
  bytes[4] = header.op;
  bytes[5] = header.flags;
  bytes[6] = header.status;
  bytes[7] = header.reserved;
  bytes.set(header.ref, 8);
  view.setUint32(32, header.offsetBytes, true);
  view.setUint32(36, header.lengthBytes, true);
  view.setUint32(40, header.arg, true);
  view.setUint32(44, header.payloadBytes, true);
  view.setUint32(48, header.payloadCrc, true);
  view.setUint32(52, crc32(bytes.subarray(0, 52)), true);
  return bytes;
}

/**
 * Decodes a header. Only the header checksum is checked here: whether the
 * fields make sense depends on the direction and the op.
 *
 * @throws {SyntaxError} on a wrong length or a header checksum mismatch.
 */
export function decodeFrameHeader(bytes: Uint8Array): FrameHeader {
  if (bytes.length !== PEER_FRAME_HEADER_BYTES) {
    throw new SyntaxError(
      `Cannot decode frame header: ${bytes.length} bytes, not ${PEER_FRAME_HEADER_BYTES}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(52, true) !== crc32(bytes.subarray(0, 52))) {
    throw new SyntaxError("Cannot decode frame header: header checksum mismatch");
  }
  return {
    requestId: view.getUint32(0, true),
    op: bytes[4]!,
    flags: bytes[5]!,
    status: bytes[6]!,
    reserved: bytes[7]!,
    ref: bytes.slice(8, 32),
    offsetBytes: view.getUint32(32, true),
    lengthBytes: view.getUint32(36, true),
    arg: view.getUint32(40, true),
    payloadBytes: view.getUint32(44, true),
    payloadCrc: view.getUint32(48, true),
  };
}

/** CRC-32 of a payload given in parts. */
export function payloadCrc(parts: readonly Uint8Array[]): number {
  let crc = 0;
  for (const part of parts) crc = crc32(part, crc);
  return crc;
}

// ---------------------------------------------------------------------------
// Limits that depend on the block size

/**
 * Checks a cluster block size: within [{@linkcode BLOCK_SIZE_BYTES_MIN},
 * {@linkcode BLOCK_SIZE_BYTES_MAX}] and whole sectors.
 *
 * @throws {RangeError} otherwise.
 */
export function checkBlockSize(blockSizeBytes: number): void {
  if (
    !Number.isSafeInteger(blockSizeBytes) || blockSizeBytes < BLOCK_SIZE_BYTES_MIN ||
    blockSizeBytes > BLOCK_SIZE_BYTES_MAX ||
    blockSizeBytes % sectorSizeBytes(blockSizeBytes) !== 0
  ) {
    throw new RangeError(
      `Cannot use a block size of ${blockSizeBytes} bytes: expected whole ${SECTOR_SIZE_BYTES}-byte ` +
        `sectors (or one smaller sector) in [${BLOCK_SIZE_BYTES_MIN}, ${BLOCK_SIZE_BYTES_MAX}]`,
    );
  }
}

/** Bytes of the sector CRC list of a block. */
export function crcListBytes(blockSizeBytes: number): number {
  return 4 * sectorsPerBlock(blockSizeBytes);
}

/** Largest request payload: a block, or a full `HAS_BLOCKS` batch. More closes the connection. */
export function requestPayloadBytesMax(blockSizeBytes: number): number {
  return Math.max(blockSizeBytes, PEER_HAS_BLOCKS_BATCH_MAX * BLOCK_REF_SIZE_BYTES);
}

/** Largest reply payload: a whole block and its sector CRCs. */
export function replyPayloadBytesMax(blockSizeBytes: number): number {
  return Math.max(
    blockSizeBytes + crcListBytes(blockSizeBytes),
    Math.ceil(PEER_HAS_BLOCKS_BATCH_MAX / 8),
    PEER_ERROR_MESSAGE_BYTES_MAX,
  );
}

/**
 * Widens a byte range to whole sectors: `READ` moves whole sectors so the
 * client can check every byte it gets against the sector CRCs.
 */
export function sectorAligned(blockSizeBytes: number, range: BlockRange): BlockRange {
  const sector = sectorSizeBytes(blockSizeBytes);
  const first = Math.floor(range.offsetBytes / sector);
  const end = Math.ceil((range.offsetBytes + range.lengthBytes) / sector);
  return { offsetBytes: first * sector, lengthBytes: (end - first) * sector };
}

// ---------------------------------------------------------------------------
// Requests as the server sees them

/** A request the server can perform. */
export interface PeerRequest {
  /** The header, as decoded. */
  header: FrameHeader;
  /** The decoded ref of ops that have one; null otherwise. */
  ref: BlockRef | null;
}

/**
 * Checks a request header against the protocol and the block size. Returns
 * the request, or why it is refused (the server answers `BAD_REQUEST`, skips
 * the payload and keeps the connection).
 *
 * The payload length must already be known to be at most
 * {@linkcode requestPayloadBytesMax}: a larger one is a framing error.
 */
export function parseRequest(header: FrameHeader, blockSizeBytes: number): PeerRequest | string {
  const { op, flags, offsetBytes, lengthBytes, arg, payloadBytes } = header;
  const name = opName(op);
  if (header.status !== 0 || header.reserved !== 0) return `${name}: status and reserved must be 0`;
  if ((flags & ~PEER_FLAGS_KNOWN) !== 0) return `${name}: unknown flags 0x${flags.toString(16)}`;
  if (flags !== 0 && op !== PeerOp.writeRange) return `${name}: takes no flags`;
  if (arg !== 0 && !(op === PeerOp.writeRange && flags === PEER_FLAG_EXPECT_DIGEST)) {
    return `${name}: arg must be 0`;
  }
  const needsRef = op === PeerOp.read || op === PeerOp.write || op === PeerOp.writeRange ||
    op === PeerOp.delete;
  let ref: BlockRef | null = null;
  if (needsRef) {
    try {
      ref = BlockRef.fromBytes(header.ref);
    } catch (error) {
      return `${name}: bad block ref: ${(error as Error).message}`;
    }
  } else if (!header.ref.every((b) => b === 0)) {
    return `${name}: takes no block ref`;
  }
  switch (op) {
    case PeerOp.ping:
    case PeerOp.flush:
    case PeerOp.delete:
      if (offsetBytes !== 0 || lengthBytes !== 0 || payloadBytes !== 0) {
        return `${name}: offset, length and payload must be 0`;
      }
      break;
    case PeerOp.read: {
      const sector = sectorSizeBytes(blockSizeBytes);
      if (payloadBytes !== 0) return `${name}: takes no payload`;
      if (offsetBytes + lengthBytes > blockSizeBytes) {
        return `${name}: bytes [${offsetBytes}, ${
          offsetBytes + lengthBytes
        }) are outside a block of ${blockSizeBytes}`;
      }
      if (offsetBytes % sector !== 0 || lengthBytes % sector !== 0) {
        return `${name}: offset ${offsetBytes} and length ${lengthBytes} must be whole sectors of ${sector}`;
      }
      break;
    }
    case PeerOp.write:
      if (offsetBytes !== 0 || lengthBytes !== 0) return `${name}: offset and length must be 0`;
      if (payloadBytes > blockSizeBytes) {
        return `${name}: ${payloadBytes} bytes do not fit a block of ${blockSizeBytes}`;
      }
      break;
    case PeerOp.writeRange:
      if (lengthBytes !== 0) return `${name}: length must be 0 (the payload is the data)`;
      if (offsetBytes + payloadBytes > blockSizeBytes) {
        return `${name}: bytes [${offsetBytes}, ${
          offsetBytes + payloadBytes
        }) are outside a block of ${blockSizeBytes}`;
      }
      break;
    case PeerOp.hasBlocks:
      if (offsetBytes !== 0) return `${name}: offset must be 0`;
      if (lengthBytes < 1 || lengthBytes > PEER_HAS_BLOCKS_BATCH_MAX) {
        return `${name}: ${lengthBytes} refs, expected 1 to ${PEER_HAS_BLOCKS_BATCH_MAX}`;
      }
      if (payloadBytes !== lengthBytes * BLOCK_REF_SIZE_BYTES) {
        return `${name}: ${payloadBytes} payload bytes for ${lengthBytes} refs`;
      }
      break;
    default:
      return `unknown op ${op}`;
  }
  return { header, ref };
}

// ---------------------------------------------------------------------------
// Payloads

/** Sector CRCs as u32 LE. */
export function encodeCrcList(crcs: Uint32Array): Uint8Array {
  const bytes = new Uint8Array(crcs.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < crcs.length; i++) view.setUint32(i * 4, crcs[i]!, true);
  return bytes;
}

/** Decodes u32 LE sector CRCs. @throws {SyntaxError} on a length that is not a multiple of 4. */
export function decodeCrcList(bytes: Uint8Array): Uint32Array {
  if (bytes.length % 4 !== 0) throw new SyntaxError(`Cannot decode CRC list of ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const crcs = new Uint32Array(bytes.length / 4);
  for (let i = 0; i < crcs.length; i++) crcs[i] = view.getUint32(i * 4, true);
  return crcs;
}

/** Refs back to back, 24 bytes each. */
export function encodeRefList(refs: readonly BlockRef[]): Uint8Array {
  const bytes = new Uint8Array(refs.length * BLOCK_REF_SIZE_BYTES);
  refs.forEach((ref, i) => ref.writeTo(bytes, i * BLOCK_REF_SIZE_BYTES));
  return bytes;
}

/**
 * Decodes refs back to back.
 *
 * @throws {SyntaxError} on a bad length or an unknown block type.
 * @throws {RangeError} on an id beyond 2^53 - 1.
 */
export function decodeRefList(bytes: Uint8Array): BlockRef[] {
  if (bytes.length % BLOCK_REF_SIZE_BYTES !== 0) {
    throw new SyntaxError(`Cannot decode ref list of ${bytes.length} bytes`);
  }
  const refs: BlockRef[] = [];
  for (let at = 0; at < bytes.length; at += BLOCK_REF_SIZE_BYTES) {
    refs.push(BlockRef.fromBytes(bytes, at));
  }
  return refs;
}

/** A bitset as in the original TDP: bit i is `byte[i >> 3] & (1 << (i & 7))`. */
export function encodeBitset(bits: readonly boolean[]): Uint8Array {
  const bytes = new Uint8Array(Math.ceil(bits.length / 8));
  bits.forEach((bit, i) => {
    if (bit) bytes[i >> 3]! |= 1 << (i & 7);
  });
  return bytes;
}

/**
 * Decodes `count` bits.
 *
 * @throws {SyntaxError} on a wrong length or set bits past `count`.
 */
export function decodeBitset(bytes: Uint8Array, count: number): boolean[] {
  if (bytes.length !== Math.ceil(count / 8)) {
    throw new SyntaxError(`Cannot decode a bitset of ${count} bits from ${bytes.length} bytes`);
  }
  const bits: boolean[] = [];
  for (let i = 0; i < count; i++) bits.push((bytes[i >> 3]! & (1 << (i & 7))) !== 0);
  if (count % 8 !== 0 && (bytes[bytes.length - 1]! >> (count % 8)) !== 0) {
    throw new SyntaxError("Cannot decode bitset: bits set past the end");
  }
  return bits;
}

/** An error message as UTF-8, cut to {@linkcode PEER_ERROR_MESSAGE_BYTES_MAX} on a character boundary. */
export function encodeMessage(message: string): Uint8Array {
  const bytes = new TextEncoder().encode(message);
  if (bytes.length <= PEER_ERROR_MESSAGE_BYTES_MAX) return bytes;
  let end = PEER_ERROR_MESSAGE_BYTES_MAX;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.slice(0, end);
}

/** Decodes an error message, replacing invalid UTF-8. */
export function decodeMessage(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}
