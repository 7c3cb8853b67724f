/**
 * How values are stored under the keys of `_etcd_keys.ts`, as in the
 * original: counters as u64 little endian, volumes, peers and the ring as
 * protobuf (`models.Volume`, `models.PeerInfo`, `models.Ring`), the current
 * INode as a 16-byte INodeRef, snapshots as the original's JSON. Every
 * decoder throws `SyntaxError` on bytes it cannot read.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { INODE_REF_SIZE_BYTES, INodeRef, readU64, writeU64 } from "../core/block_ref.ts";
import { PeerInfoSchema, RingSchema, VolumeSchema } from "../models/torus_pb.ts";
import type { PeerRecord, SnapshotInfo, VolumeInfo } from "./metadata_service.ts";

/** Size of a stored counter. */
const U64_SIZE_BYTES = 8;
/** The original stores times as nanoseconds since the epoch. */
const NANOSECONDS_PER_MILLISECOND = 1_000_000n;

/** Encodes a counter as u64 little endian. */
export function encodeU64(value: number): Uint8Array {
  const bytes = new Uint8Array(U64_SIZE_BYTES);
  writeU64(new DataView(bytes.buffer), 0, value);
  return bytes;
}

/** Decodes {@linkcode encodeU64}. */
export function decodeU64(what: string, bytes: Uint8Array): number {
  if (bytes.length !== U64_SIZE_BYTES) {
    throw new SyntaxError(`Cannot read ${what}: expected 8 bytes, found ${bytes.length}`);
  }
  try {
    return readU64(new DataView(bytes.buffer, bytes.byteOffset, bytes.length), 0);
  } catch (error) {
    throw new SyntaxError(`Cannot read ${what}: ${(error as Error).message}`);
  }
}

/** A protobuf integer as a number, refusing values a number cannot hold exactly. */
function safeNumber(what: string, value: bigint): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new SyntaxError(`Cannot read ${what}: ${value} is out of range`);
  }
  return Number(value);
}

function parse<T>(what: string, decode: () => T): T {
  try {
    return decode();
  } catch (error) {
    if (error instanceof SyntaxError) throw error;
    throw new SyntaxError(`Cannot read ${what}: ${(error as Error).message}`, { cause: error });
  }
}

/** Encodes a volume's registry entry as `models.Volume`. */
export function encodeVolume(volume: VolumeInfo): Uint8Array {
  return toBinary(
    VolumeSchema,
    create(VolumeSchema, {
      name: volume.name,
      id: BigInt(volume.id),
      type: volume.type,
      maxBytes: BigInt(volume.sizeBytes),
    }),
  );
}

/** Decodes {@linkcode encodeVolume}. */
export function decodeVolume(bytes: Uint8Array): VolumeInfo {
  const volume = parse("a volume", () => fromBinary(VolumeSchema, bytes));
  if (volume.type !== "block") {
    throw new SyntaxError(`Cannot read volume "${volume.name}": unknown type "${volume.type}"`);
  }
  return {
    name: volume.name,
    id: safeNumber(`the id of volume "${volume.name}"`, volume.id),
    type: "block",
    sizeBytes: safeNumber(`the size of volume "${volume.name}"`, volume.maxBytes),
  };
}

/** Encodes a peer as `models.PeerInfo` (times in nanoseconds, as the original). */
export function encodePeer(peer: PeerRecord, lastSeenMs: number): Uint8Array {
  return toBinary(
    PeerInfoSchema,
    create(PeerInfoSchema, {
      uuid: peer.uuid,
      address: peer.address,
      lastSeen: BigInt(lastSeenMs) * NANOSECONDS_PER_MILLISECOND,
      totalBlocks: BigInt(peer.totalBlocks),
      usedBlocks: BigInt(peer.usedBlocks),
      rebalanceInfo: {
        lastRebalanceFinish: BigInt(peer.lastRebalanceFinishMs) * NANOSECONDS_PER_MILLISECOND,
        lastRebalanceBlocks: BigInt(peer.lastRebalanceBlocks),
        rebalancing: peer.rebalancing,
      },
      protocolVersion: BigInt(peer.protocolVersion),
    }),
  );
}

/** Decodes {@linkcode encodePeer}; nanoseconds round down to milliseconds. */
export function decodePeer(bytes: Uint8Array): PeerRecord {
  const peer = parse("a peer", () => fromBinary(PeerInfoSchema, bytes));
  const what = (field: string) => `${field} of peer ${peer.uuid}`;
  const rebalance = peer.rebalanceInfo;
  return {
    uuid: peer.uuid,
    address: peer.address,
    lastSeenMs: safeNumber(what("lastSeen"), peer.lastSeen / NANOSECONDS_PER_MILLISECOND),
    totalBlocks: safeNumber(what("totalBlocks"), peer.totalBlocks),
    usedBlocks: safeNumber(what("usedBlocks"), peer.usedBlocks),
    rebalancing: rebalance?.rebalancing ?? false,
    lastRebalanceFinishMs: safeNumber(
      what("lastRebalanceFinish"),
      (rebalance?.lastRebalanceFinish ?? 0n) / NANOSECONDS_PER_MILLISECOND,
    ),
    lastRebalanceBlocks: safeNumber(
      what("lastRebalanceBlocks"),
      rebalance?.lastRebalanceBlocks ?? 0n,
    ),
    protocolVersion: safeNumber(what("protocolVersion"), peer.protocolVersion),
  };
}

/**
 * The version a marshalled `models.Ring` carries.
 *
 * @throws {SyntaxError} when the bytes are not a ring.
 */
export function ringVersionOf(bytes: Uint8Array): number {
  return parse("the ring", () => fromBinary(RingSchema, bytes)).version;
}

/** Encodes the current INode as the original's 16-byte INodeRef. */
export function encodeINodeRef(ref: INodeRef): Uint8Array {
  return ref.toBytes();
}

/**
 * Decodes {@linkcode encodeINodeRef}, checking it belongs to `volumeId`.
 *
 * @param what What holds the ref, for the message.
 */
export function decodeINodeRef(what: string, volumeId: number, bytes: Uint8Array): INodeRef {
  if (bytes.length !== INODE_REF_SIZE_BYTES) {
    throw new SyntaxError(
      `Cannot read ${what} of volume id ${volumeId}: expected ${INODE_REF_SIZE_BYTES} bytes, ` +
        `found ${bytes.length}`,
    );
  }
  const ref = parse(`${what} of volume id ${volumeId}`, () => INodeRef.fromBytes(bytes));
  if (ref.volume !== volumeId) {
    throw new SyntaxError(
      `Cannot read ${what} of volume id ${volumeId}: it names volume id ${ref.volume}`,
    );
  }
  return ref;
}

/**
 * Formats a time as Go's `time.RFC3339Nano` does for UTC: no trailing zeros
 * in the fraction, and no fraction at all for a whole second.
 */
export function formatRfc3339Nano(timeMs: number): string {
  return new Date(timeMs).toISOString().replace(/\.?0+Z$/, "Z");
}

/** Encodes a snapshot as the original's JSON (`When` RFC 3339, `INodeRef` base64). */
export function encodeSnapshot(snapshot: SnapshotInfo): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({
    Name: snapshot.name,
    When: formatRfc3339Nano(snapshot.createdMs),
    INodeRef: Buffer.from(snapshot.inode.toBytes()).toString("base64"),
  }));
}

/** Decodes {@linkcode encodeSnapshot}, checking it belongs to `volumeId`. */
export function decodeSnapshot(volumeId: number, bytes: Uint8Array): SnapshotInfo {
  const text = new TextDecoder().decode(bytes);
  const value = parse("a snapshot", () => JSON.parse(text) as unknown);
  if (typeof value === "object" && value !== null) {
    const { Name: name, When: when, INodeRef: ref } = value as Record<string, unknown>;
    if (typeof name === "string" && typeof when === "string" && typeof ref === "string") {
      const createdMs = Date.parse(when);
      if (Number.isSafeInteger(createdMs)) {
        return {
          name,
          createdMs,
          inode: decodeINodeRef(`snapshot "${name}"`, volumeId, Buffer.from(ref, "base64")),
        };
      }
    }
  }
  throw new SyntaxError(`Cannot read a snapshot of volume id ${volumeId}: unexpected JSON ${text}`);
}
