/**
 * The etcd key layout of Torus, the original's (§3.2 of the reference) with
 * every key under a prefix that ends in `/` and every per-volume prefix
 * ending in `/` too, so that no prefix matches a neighbour: deleting
 * `volumemeta/2/` leaves `volumemeta/20/` alone, and wiping
 * `/github.com/coreos/torus/` leaves `/github.com/coreos/torus2/` alone.
 *
 * | Key (under the prefix)              | Value                                     |
 * | ----------------------------------- | ----------------------------------------- |
 * | `meta/globalmetadata`               | JSON `{"BlockSize":…,"DefaultBlockSpec":…}` |
 * | `meta/volumeminter`                 | u64 LE: the last volume id handed out     |
 * | `meta/leaseminter`                  | empty; its revisions are lease ids        |
 * | `meta/the-one-ring`                 | `models.Ring`                             |
 * | `nodes/<uuid>`                      | `models.PeerInfo`, bound to the lease     |
 * | `volumes/<name>`                    | u64 LE volume id                          |
 * | `volumeid/<hex id>`                 | `models.Volume`                           |
 * | `volumemeta/<hex id>/inode`         | u64 LE: the last INode number handed out  |
 * | `volumemeta/<hex id>/blockinode`    | 16-byte INodeRef: the current INode       |
 * | `volumemeta/<hex id>/blocklock`     | owner uuid, bound to the owner's lease    |
 * | `volumemeta/<hex id>/snapshots/<n>` | JSON `{"Name","When","INodeRef"}`         |
 *
 * Hex ids are lowercase without padding, as in the original.
 *
 * @module
 */
import { Buffer } from "node:buffer";

/** The original's key prefix. */
export const ETCD_KEY_PREFIX_DEFAULT = "/github.com/coreos/torus/";

/**
 * Adds the trailing `/` a prefix needs to match only its own keys.
 *
 * @throws {RangeError} on a prefix that is empty or only slashes (it would
 * cover the whole of etcd).
 */
export function normalizeKeyPrefix(prefix: string): string {
  if (typeof prefix !== "string" || prefix.replaceAll("/", "") === "") {
    throw new RangeError(
      `Cannot use etcd key prefix ${JSON.stringify(prefix)}: it must name something ` +
        `besides "/", or it would cover every key in etcd`,
    );
  }
  return prefix.endsWith("/") ? prefix : `${prefix}/`;
}

/**
 * The end of the key range holding every key that starts with `prefix`
 * (etcd's "prefix end": the prefix with its last byte incremented).
 */
export function prefixRangeEnd(prefix: Uint8Array): Buffer {
  const end = Buffer.from(prefix);
  for (let index = end.length - 1; index >= 0; index--) {
    if (end[index]! < 0xff) {
      end[index]! += 1;
      return end.subarray(0, index + 1);
    }
  }
  // Only 0xff bytes: the range runs to the end of the key space.
  return Buffer.from([0]);
}

/** The keys of one Torus cluster. */
export class EtcdKeys {
  /** The normalized prefix, ending in `/`. */
  readonly prefix: string;

  /** @throws {RangeError} on a prefix {@linkcode normalizeKeyPrefix} refuses. */
  constructor(prefix: string) {
    this.prefix = normalizeKeyPrefix(prefix);
  }

  #key(path: string): Buffer {
    return Buffer.from(this.prefix + path, "utf8");
  }

  /** Every key of the cluster (for wipe). */
  get all(): Buffer {
    return this.#key("");
  }

  get globalMetadata(): Buffer {
    return this.#key("meta/globalmetadata");
  }

  get volumeMinter(): Buffer {
    return this.#key("meta/volumeminter");
  }

  get leaseMinter(): Buffer {
    return this.#key("meta/leaseminter");
  }

  get ring(): Buffer {
    return this.#key("meta/the-one-ring");
  }

  /** Prefix of every peer registration. */
  get nodes(): Buffer {
    return this.#key("nodes/");
  }

  node(uuid: string): Buffer {
    return this.#key(`nodes/${uuid}`);
  }

  volumeName(name: string): Buffer {
    return this.#key(`volumes/${name}`);
  }

  /** Prefix of every volume's registry entry. */
  get volumes(): Buffer {
    return this.#key("volumeid/");
  }

  volume(id: number): Buffer {
    return this.#key(`volumeid/${id.toString(16)}`);
  }

  /** Prefix of everything stored per volume, with its trailing `/`. */
  volumeMeta(id: number): Buffer {
    return this.#key(`volumemeta/${id.toString(16)}/`);
  }

  inodeCounter(id: number): Buffer {
    return this.#key(`volumemeta/${id.toString(16)}/inode`);
  }

  currentINode(id: number): Buffer {
    return this.#key(`volumemeta/${id.toString(16)}/blockinode`);
  }

  lock(id: number): Buffer {
    return this.#key(`volumemeta/${id.toString(16)}/blocklock`);
  }

  /** Prefix of a volume's snapshots. */
  snapshots(id: number): Buffer {
    return this.#key(`volumemeta/${id.toString(16)}/snapshots/`);
  }

  snapshot(id: number, name: string): Buffer {
    return this.#key(`volumemeta/${id.toString(16)}/snapshots/${name}`);
  }
}
