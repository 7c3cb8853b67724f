/**
 * The stored form of a ring, `models.Ring`, and the conversions every ring
 * kind shares. Members are stored as `models.PeerInfo` with only `uuid` and
 * `total_blocks` set: a ring places blocks by those two, and addresses and
 * liveness come from peer registration, not from the ring.
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { PeerInfoSchema, type Ring as RingMessage, RingSchema } from "../models/torus_pb.ts";
import type { RingPeer, RingType } from "./ring.ts";

/** The fields of a stored ring, as the rings hold them. */
export interface RingRecord {
  type: RingType;
  version: number;
  replication: number;
  peers: readonly RingPeer[];
  /** Nested rings, by name (`old`, `new` for a union ring). */
  attrs?: Record<string, Uint8Array>;
}

/** Encodes a ring as `models.Ring` bytes. */
export function encodeRing(record: RingRecord): Uint8Array {
  return toBinary(
    RingSchema,
    create(RingSchema, {
      type: record.type,
      version: record.version,
      replicationFactor: record.replication,
      peers: record.peers.map((peer) =>
        create(PeerInfoSchema, { uuid: peer.uuid, totalBlocks: BigInt(peer.totalBlocks) })
      ),
      attrs: record.attrs ?? {},
    }),
  );
}

/**
 * Decodes `models.Ring` bytes into their fields, unchecked beyond the wire
 * format and number ranges: the ring kinds check the rest.
 *
 * @throws {SyntaxError} on bytes that are not a `models.Ring`.
 */
export function decodeRing(bytes: Uint8Array): Omit<RingRecord, "type"> & { type: number } {
  let message: RingMessage;
  try {
    message = fromBinary(RingSchema, bytes);
  } catch (error) {
    throw new SyntaxError(`Cannot decode ring: ${(error as Error).message}`, { cause: error });
  }
  const peers = message.peers.map((info) => {
    if (info.totalBlocks > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new SyntaxError(
        `Cannot decode ring: peer "${info.uuid}" has an impossible capacity of ${info.totalBlocks} blocks`,
      );
    }
    return { uuid: info.uuid, totalBlocks: Number(info.totalBlocks) };
  });
  return {
    type: message.type,
    version: message.version,
    replication: message.replicationFactor,
    peers,
    attrs: message.attrs,
  };
}
