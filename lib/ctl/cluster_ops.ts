/**
 * Cluster administration behind `torusctl list-peers`, `peer add|remove`
 * and `ring get|set-replication|manual-change`: pure functions of the
 * metadata service. Every ring change is a compare-and-swap at version + 1,
 * retried when another change wins the race.
 *
 * @module
 */
import { ConflictError, PeerNotFoundError } from "../errors.ts";
import type { MetadataService, PeerRecord } from "../metadata/metadata_service.ts";
import { createRing, isMutableRing, ringTypeName, unmarshalRing } from "../ring/ring_codec.ts";
import type { Ring, RingPeer, RingType } from "../ring/ring.ts";

/** Attempts of a ring change against concurrent changes. */
export const RING_CHANGE_ATTEMPTS_MAX = 16;
/** The largest replication factor a ring may have. */
export const REPLICATION_MAX = 16;

/** One row of `torusctl list-peers`. */
export interface PeerRow {
  address: string;
  uuid: string;
  /** Capacity in bytes, or null when unknown (a member without a heartbeat). */
  sizeBytes: number | null;
  usedBytes: number | null;
  /** `OK` (a ring member), `Avail` (alive, not a member) or `DOWN` (a member without a heartbeat). */
  member: "OK" | "Avail" | "DOWN";
  /** Last heartbeat, in ms since the epoch (0: never). */
  lastSeenMs: number;
  rebalancing: boolean;
}

/** What `torusctl list-peers` shows. */
export interface PeerListing {
  rows: PeerRow[];
  /** True when no peer reports rebalancing. */
  balanced: boolean;
  /** Used over total bytes of the live storage peers, 0 to 1. */
  usage: number;
  ring: Ring;
}

/** Live storage peers and ring members, as `torusctl list-peers` shows them. */
export async function listPeers(metadata: MetadataService): Promise<PeerListing> {
  const { blockSizeBytes } = await metadata.globalMetadata();
  const ring = unmarshalRing((await metadata.getRing()).bytes);
  const members = new Set(ring.members().map((member) => member.uuid));
  const peers = (await metadata.listPeers()).filter((peer) => peer.address !== "");
  const rows: PeerRow[] = peers.map((peer) => ({
    address: peer.address,
    uuid: peer.uuid,
    sizeBytes: peer.totalBlocks * blockSizeBytes,
    usedBytes: peer.usedBlocks * blockSizeBytes,
    member: members.has(peer.uuid) ? "OK" : "Avail",
    lastSeenMs: peer.lastSeenMs,
    rebalancing: peer.rebalancing,
  }));
  const alive = new Set(peers.map((peer) => peer.uuid));
  for (const member of ring.members()) {
    if (alive.has(member.uuid)) continue;
    rows.push({
      address: "",
      uuid: member.uuid,
      sizeBytes: null,
      usedBytes: null,
      member: "DOWN",
      lastSeenMs: 0,
      rebalancing: false,
    });
  }
  const total = peers.reduce((sum, peer) => sum + peer.totalBlocks, 0);
  const used = peers.reduce((sum, peer) => sum + peer.usedBlocks, 0);
  return {
    rows,
    balanced: !peers.some((peer) => peer.rebalancing),
    usage: total === 0 ? 0 : used / total,
    ring,
  };
}

/**
 * Adds live peers, named by address or uuid (or every live storage peer), to
 * the ring. Returns the new ring.
 *
 * @throws {PeerNotFoundError} when a name matches no live peer.
 * @throws {AlreadyExistsError} when every named peer is already a member.
 */
export async function addPeers(
  metadata: MetadataService,
  names: string[],
  options: { allPeers?: boolean } = {},
): Promise<Ring> {
  const peers = (await metadata.listPeers()).filter((peer) => peer.address !== "");
  const chosen = options.allPeers ? peers : names.map((name) => findPeer(peers, name));
  if (chosen.length === 0) {
    throw new PeerNotFoundError(
      "No live storage peer to add: is torusd running with --peer-address?",
    );
  }
  const add: RingPeer[] = chosen.map((peer) => ({
    uuid: peer.uuid,
    totalBlocks: peer.totalBlocks,
  }));
  return await changeRing(metadata, (ring) => mutable(ring).addPeers(add));
}

/**
 * Removes peers, named by address or uuid, from the ring. Unless `force`,
 * each must be alive (a uuid that is only a ring member needs `force`).
 *
 * @throws {PeerNotFoundError} when a name matches nothing removable.
 */
export async function removePeers(
  metadata: MetadataService,
  names: string[],
  options: { force?: boolean } = {},
): Promise<Ring> {
  const peers = await metadata.listPeers();
  const uuids = names.map((name) => {
    const peer = peers.find((p) => p.uuid === name || p.address === name);
    if (peer) return peer.uuid;
    if (options.force) return name;
    throw new PeerNotFoundError(
      `Peer ${name} is not currently healthy. To remove it anyway, use --force`,
    );
  });
  return await changeRing(metadata, (ring) => mutable(ring).removePeers(uuids));
}

/** Sets the ring's replication factor. */
export async function setReplication(
  metadata: MetadataService,
  replication: number,
): Promise<Ring> {
  checkReplication(replication);
  return await changeRing(metadata, (ring) => mutable(ring).changeReplication(replication));
}

/**
 * Replaces the ring with a new one of `type` over the named live peers (or
 * all of them), at the next version.
 *
 * @throws {PeerNotFoundError} when a uuid matches no live peer.
 */
export async function manualChange(
  metadata: MetadataService,
  options: { type: RingType; uuids: string[]; allPeers?: boolean; replication: number },
): Promise<Ring> {
  checkReplication(options.replication);
  const peers = (await metadata.listPeers()).filter((peer) => peer.address !== "");
  const chosen = options.allPeers ? peers : options.uuids.map((uuid) => findPeer(peers, uuid));
  return await changeRing(metadata, (ring) =>
    createRing(options.type, {
      version: ring.version + 1,
      replication: options.replication,
      peers: chosen.map((peer) => ({ uuid: peer.uuid, totalBlocks: peer.totalBlocks })),
    }));
}

/** The current ring. */
export async function getRing(metadata: MetadataService): Promise<Ring> {
  return unmarshalRing((await metadata.getRing()).bytes);
}

/** Applies `change` to the current ring and stores the result, retrying lost races. */
async function changeRing(
  metadata: MetadataService,
  change: (ring: Ring) => Ring,
): Promise<Ring> {
  for (let attempt = 0; attempt < RING_CHANGE_ATTEMPTS_MAX; attempt++) {
    const ring = await getRing(metadata);
    const next = change(ring);
    try {
      await metadata.setRing({ version: next.version, bytes: next.marshal() });
      return next;
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
    }
  }
  throw new ConflictError(
    `Cannot change the ring: it changed ${RING_CHANGE_ATTEMPTS_MAX} times meanwhile; try again`,
  );
}

function mutable(ring: Ring) {
  if (!isMutableRing(ring)) {
    throw new TypeError(
      `Cannot change a ${ringTypeName(ring.type)} ring in place: use torusctl ring manual-change`,
    );
  }
  return ring;
}

function findPeer(peers: PeerRecord[], name: string): PeerRecord {
  const peer = peers.find((p) => p.uuid === name || p.address === name);
  if (!peer) throw new PeerNotFoundError(`No live storage peer has address or uuid ${name}`);
  return peer;
}

function checkReplication(replication: number): void {
  if (!Number.isSafeInteger(replication) || replication < 1 || replication > REPLICATION_MAX) {
    throw new RangeError(`Cannot set replication ${replication}: expected 1 to ${REPLICATION_MAX}`);
  }
}
