/**
 * Argument checks shared by every {@linkcode MetadataService} implementation,
 * so that all of them refuse the same inputs with the same messages.
 *
 * @module
 */
import { NAME_LENGTH_BYTES_MAX, VOLUME_ID_MAX, VOLUME_SIZE_BYTES_MAX } from "../constants.ts";
import { checkNewBlockSize } from "../core/sector.ts";
import type {
  GlobalMetadata,
  MetadataService,
  PeerRecord,
  RingRecord,
  VolumeInfo,
} from "./metadata_service.ts";

const encoder = new TextEncoder();

/** First C0 control character (NUL). */
const CONTROL_C0_FIRST = 0x00;
/** Last C0 control character (US). */
const CONTROL_C0_LAST = 0x1f;
/** DEL and the C1 control characters run from here ... */
const CONTROL_C1_FIRST = 0x7f;
/** ... to here. */
const CONTROL_C1_LAST = 0x9f;

function isControlCharacter(code: number): boolean {
  return (code >= CONTROL_C0_FIRST && code <= CONTROL_C0_LAST) ||
    (code >= CONTROL_C1_FIRST && code <= CONTROL_C1_LAST);
}

/**
 * Checks a volume or snapshot name: non-empty, well-formed Unicode, at most
 * {@linkcode NAME_LENGTH_BYTES_MAX} bytes of UTF-8, without `/` (key paths),
 * `@` (the `volume@snapshot` syntax of the tools) or control characters.
 *
 * @param what `volume` or `snapshot`, for the message.
 * @throws {RangeError} when the name is not acceptable.
 */
export function checkName(what: string, name: string): void {
  if (typeof name !== "string" || name.length === 0) {
    throw new RangeError(`Cannot use ${what} name "": a name must not be empty`);
  }
  if (!name.isWellFormed()) {
    throw new RangeError(
      `Cannot use ${what} name ${JSON.stringify(name)}: it contains a lone surrogate`,
    );
  }
  const lengthBytes = encoder.encode(name).length;
  if (lengthBytes > NAME_LENGTH_BYTES_MAX) {
    throw new RangeError(
      `Cannot use ${what} name ${JSON.stringify(name)}: it is ${lengthBytes} bytes long, ` +
        `the maximum is ${NAME_LENGTH_BYTES_MAX}`,
    );
  }
  for (let index = 0; index < name.length; index++) {
    const code = name.charCodeAt(index);
    if (name[index] === "/" || name[index] === "@" || isControlCharacter(code)) {
      throw new RangeError(
        `Cannot use ${what} name ${JSON.stringify(name)}: it contains the forbidden character ` +
          `U+${code.toString(16).padStart(4, "0").toUpperCase()}`,
      );
    }
  }
}

/**
 * Checks a volume size: a positive integer of at most
 * {@linkcode VOLUME_SIZE_BYTES_MAX} bytes.
 *
 * @param action what is being done to the volume, for the message.
 * @throws {RangeError} otherwise.
 */
export function checkVolumeSizeBytes(
  name: string,
  sizeBytes: number,
  action: "create" | "resize" = "create",
): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes > VOLUME_SIZE_BYTES_MAX) {
    throw new RangeError(
      `Cannot ${action} volume "${name}" as 'sizeBytes' must be an integer in ` +
        `[1, ${VOLUME_SIZE_BYTES_MAX}]: current value is ${sizeBytes}`,
    );
  }
}

/**
 * Checks that resizing `volume` to `sizeBytes` does not shrink it.
 *
 * @throws {RangeError} when `sizeBytes` is smaller than the volume's size.
 */
export function checkNotShrinking(volume: VolumeInfo, sizeBytes: number): void {
  if (sizeBytes < volume.sizeBytes) {
    throw new RangeError(
      `Cannot resize volume "${volume.name}" to ${sizeBytes} bytes: it has ` +
        `${volume.sizeBytes} bytes, and shrinking would cut off data`,
    );
  }
}

/**
 * Checks that a freshly minted volume id is still a valid 40-bit id.
 *
 * @throws {RangeError} when the ids are exhausted.
 */
export function checkNewVolumeId(name: string, id: number): void {
  if (!Number.isSafeInteger(id) || id < 1 || id >= VOLUME_ID_MAX) {
    throw new RangeError(
      `Cannot create volume "${name}": volume ids are exhausted (next id would be ${id})`,
    );
  }
}

/**
 * Checks a volume id argument (a positive integer below {@linkcode VOLUME_ID_MAX}).
 *
 * @throws {RangeError} otherwise.
 */
export function checkVolumeId(volumeId: number): void {
  if (!Number.isSafeInteger(volumeId) || volumeId < 1 || volumeId > VOLUME_ID_MAX) {
    throw new RangeError(
      `Cannot use volume id ${volumeId}: expected an integer in [1, ${VOLUME_ID_MAX}]`,
    );
  }
}

/**
 * Checks a lease time to live: a positive integer number of milliseconds.
 *
 * @throws {RangeError} otherwise.
 */
export function checkTtlMs(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw new RangeError(
      `Cannot grant lease as 'ttlMs' must be a positive integer: current value is ${ttlMs}`,
    );
  }
}

/**
 * Checks the global metadata given to `initialize`.
 *
 * @throws {RangeError} on a block size that is not a power of two in bounds, or an empty spec.
 */
export function checkGlobalMetadata(metadata: GlobalMetadata): void {
  const { blockSizeBytes, defaultBlockSpec } = metadata;
  checkNewBlockSize(blockSizeBytes);
  if (typeof defaultBlockSpec !== "string" || defaultBlockSpec.length === 0) {
    throw new RangeError(
      `Cannot initialize metadata as 'defaultBlockSpec' must not be empty`,
    );
  }
}

/**
 * Checks a ring record: a positive integer version and bytes.
 *
 * @throws {RangeError} otherwise.
 */
export function checkRing(ring: RingRecord): void {
  if (!Number.isSafeInteger(ring.version) || ring.version < 1) {
    throw new RangeError(
      `Cannot store ring as 'version' must be a positive integer: current value is ${ring.version}`,
    );
  }
  if (!(ring.bytes instanceof Uint8Array)) {
    throw new TypeError(`Cannot store ring version ${ring.version}: 'bytes' is not a Uint8Array`);
  }
}

/**
 * Encodes global metadata as JSON with the original's field names
 * (`BlockSize`, `DefaultBlockSpec`), the spec as its string form.
 */
export function encodeGlobalMetadata(metadata: GlobalMetadata): string {
  return JSON.stringify({
    BlockSize: metadata.blockSizeBytes,
    DefaultBlockSpec: metadata.defaultBlockSpec,
  });
}

/**
 * Decodes {@linkcode encodeGlobalMetadata}'s JSON.
 *
 * @throws {SyntaxError} on anything else.
 */
export function decodeGlobalMetadata(text: string): GlobalMetadata {
  const value: unknown = JSON.parse(text);
  if (typeof value === "object" && value !== null && "BlockSize" in value) {
    const { BlockSize: blockSizeBytes, DefaultBlockSpec: defaultBlockSpec } = value as {
      BlockSize: unknown;
      DefaultBlockSpec?: unknown;
    };
    if (typeof blockSizeBytes === "number" && typeof defaultBlockSpec === "string") {
      return { blockSizeBytes, defaultBlockSpec };
    }
  }
  throw new SyntaxError(`Cannot read global metadata: unexpected JSON ${text}`);
}

/** The fields of a peer record that are counts or times: non-negative integers. */
const PEER_INTEGER_FIELDS = [
  "totalBlocks",
  "usedBlocks",
  "lastRebalanceFinishMs",
  "lastRebalanceBlocks",
  "protocolVersion",
] as const;

/**
 * Checks a peer record before it is registered.
 *
 * @throws {RangeError} on an empty uuid or a count that is not a non-negative integer.
 * @throws {TypeError} on an address that is not a string.
 */
export function checkPeer(peer: PeerRecord): void {
  if (typeof peer.uuid !== "string" || peer.uuid.length === 0) {
    throw new RangeError(`Cannot register peer: 'uuid' must not be empty`);
  }
  if (typeof peer.address !== "string") {
    throw new TypeError(`Cannot register peer ${peer.uuid}: 'address' is not a string`);
  }
  for (const field of PEER_INTEGER_FIELDS) {
    const value = peer[field];
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(
        `Cannot register peer ${peer.uuid} as '${field}' must be a non-negative integer: ` +
          `current value is ${value}`,
      );
    }
  }
}

/** A copy of `peer` with `lastSeenMs` replaced, holding only the record's own fields. */
export function copyPeer(peer: PeerRecord, lastSeenMs: number): PeerRecord {
  return {
    uuid: peer.uuid,
    address: peer.address,
    lastSeenMs,
    totalBlocks: peer.totalBlocks,
    usedBlocks: peer.usedBlocks,
    rebalancing: peer.rebalancing,
    lastRebalanceFinishMs: peer.lastRebalanceFinishMs,
    lastRebalanceBlocks: peer.lastRebalanceBlocks,
    protocolVersion: peer.protocolVersion,
  };
}

/**
 * Orders strings by UTF-16 code units, the same on every implementation
 * (unlike `localeCompare`).
 */
export function compareStrings(left: string, right: string): number {
  return left < right ? -1 : left > right ? 1 : 0;
}

/** The message of the {@linkcode ClosedError} thrown by a closed service. */
export function closedMessage(service: MetadataService, operation: string): string {
  return `Cannot ${operation}: the ${service.kind} metadata service is closed`;
}
