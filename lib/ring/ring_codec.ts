/**
 * Rings to and from their stored form (`models.Ring` bytes in the metadata
 * service), rings by type, and ring type names.
 *
 * @module
 */
import { decodeRing } from "./_ring_record.ts";
import { EmptyRing } from "./empty_ring.ts";
import { KetamaRing } from "./ketama_ring.ts";
import { ModRing } from "./mod_ring.ts";
import type { RingOptions } from "./peer_list.ts";
import { type MutableRing, type Ring, RingType } from "./ring.ts";
import { SingleRing } from "./single_ring.ts";
import { UNION_NEW_ATTR, UNION_OLD_ATTR, UnionRing } from "./union_ring.ts";

/**
 * Deepest nesting of union rings `unmarshalRing` accepts: a transition within
 * a transition is conceivable, a deeper one is corrupt (and would otherwise
 * recurse as deep as the bytes allow).
 */
export const RING_NESTING_DEPTH_MAX = 4;

const NAMES: Record<RingType, string> = {
  [RingType.empty]: "empty",
  [RingType.single]: "single",
  [RingType.mod]: "mod",
  [RingType.union]: "union",
  [RingType.ketama]: "ketama",
};

/** The name of a ring type: `empty`, `single`, `mod`, `union` or `ketama`. */
export function ringTypeName(type: RingType): string {
  return NAMES[type];
}

/**
 * The ring type named `name` (case-insensitive).
 *
 * @throws {SyntaxError} on an unknown name.
 * @example Usage
 * ```ts
 * import { parseRingType } from "./ring_codec.ts";
 * import { RingType } from "./ring.ts";
 * if (parseRingType("Ketama") !== RingType.ketama) throw new Error("wrong");
 * ```
 */
export function parseRingType(name: string): RingType {
  const wanted = name.trim().toLowerCase();
  for (const [type, known] of Object.entries(NAMES)) {
    if (known === wanted) return Number(type) as RingType;
  }
  throw new SyntaxError(
    `Cannot use ring type "${name}": expected one of ${Object.values(NAMES).join(", ")}`,
  );
}

/** True when `ring` supports membership and replication changes. */
export function isMutableRing(ring: Ring): ring is MutableRing {
  const candidate = ring as Partial<MutableRing>;
  return typeof candidate.addPeers === "function" &&
    typeof candidate.removePeers === "function" &&
    typeof candidate.changeReplication === "function";
}

/**
 * A ring of `type` from its parts. `empty` takes no peers, `single` exactly
 * one; `union` is made of two rings, so build it with `new UnionRing(old, new)`.
 *
 * @throws {RangeError} when the parts do not make a ring of that type.
 * @example Usage
 * ```ts
 * import { createRing, unmarshalRing } from "./ring_codec.ts";
 * import { RingType } from "./ring.ts";
 * const ring = createRing(RingType.ketama, {
 *   version: 1,
 *   replication: 2,
 *   peers: [{ uuid: "a", totalBlocks: 100 }, { uuid: "b", totalBlocks: 100 }],
 * });
 * if (unmarshalRing(ring.marshal()).describe() !== ring.describe()) throw new Error("round trip");
 * ```
 */
export function createRing(type: RingType, options: RingOptions): Ring {
  switch (type) {
    case RingType.empty:
      if (options.peers.length > 0) {
        throw new RangeError(
          `Cannot create an empty ring with ${options.peers.length} peers: use another ring type`,
        );
      }
      return new EmptyRing({ version: options.version, replication: options.replication });
    case RingType.single:
      return new SingleRing(options);
    case RingType.mod:
      return new ModRing(options);
    case RingType.ketama:
      return new KetamaRing(options);
    case RingType.union:
      throw new RangeError(
        "Cannot create a union ring from peers: a union ring joins an old and a new ring",
      );
    default:
      throw new RangeError(`Cannot create a ring of unknown type ${type}`);
  }
}

/**
 * Decodes a ring stored as `models.Ring` bytes, of any type.
 *
 * @throws {SyntaxError} on bytes that are not a valid ring, saying what is wrong.
 */
export function unmarshalRing(bytes: Uint8Array): Ring {
  return unmarshalAt(bytes, 0);
}

function unmarshalAt(bytes: Uint8Array, depth: number): Ring {
  const record = decodeRing(bytes);
  if (!(record.type in NAMES)) {
    throw new SyntaxError(
      `Cannot decode ring: unknown type ${record.type} (known: 0 empty, 1 single, 2 mod, 3 union, 4 ketama)`,
    );
  }
  const type = record.type as RingType;
  if (type === RingType.union) {
    if (depth >= RING_NESTING_DEPTH_MAX) {
      throw new SyntaxError(
        `Cannot decode ring: union rings nested deeper than ${RING_NESTING_DEPTH_MAX}`,
      );
    }
    const nested = (name: string) => {
      const inner = record.attrs?.[name];
      if (inner === undefined) {
        throw new SyntaxError(`Cannot decode union ring: attribute "${name}" is missing`);
      }
      return unmarshalAt(inner, depth + 1);
    };
    const ring = new UnionRing(nested(UNION_OLD_ATTR), nested(UNION_NEW_ATTR));
    if (ring.version !== record.version) {
      throw new SyntaxError(
        `Cannot decode union ring: version ${record.version} differs from its new ring's ${ring.version}`,
      );
    }
    return ring;
  }
  try {
    return createRing(type, record);
  } catch (error) {
    if (error instanceof RangeError) {
      throw new SyntaxError(`Cannot decode ${NAMES[type]} ring: ${error.message}`, {
        cause: error,
      });
    }
    throw error;
  }
}
