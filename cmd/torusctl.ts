/**
 * torusctl: administer Torus volumes and snapshots, a data directory or a cluster.
 * Thin wiring: flags here, operations in lib/ctl.
 *
 * @module
 */
import { type Command, type FlagSpec, print, runCommand, UsageError } from "../lib/cli/command.ts";
import { progressBar } from "../lib/cli/progress.ts";
import { type OutputFormat, parseOutputFormat, renderListing } from "../lib/cli/table.ts";
import { collectGarbage } from "../lib/block/gc.ts";
import type { VolumeContext } from "../lib/block/block_volume.ts";
import {
  configPathFromFlags,
  ETCD_FLAGS,
  profileFromEtcdFlags,
  profileFromFlags,
} from "../lib/config/etcd_flags.ts";
import { saveProfile, viewCliConfig } from "../lib/config/profile.ts";
import { dumpVolume, loadVolume } from "../lib/ctl/dump_load.ts";
import { applyDiff, exportDiff } from "../lib/ctl/volume_diff.ts";
import {
  cloneSnapshot,
  createSnapshot,
  createVolume,
  deleteSnapshot,
  deleteVolume,
  initialize,
  listSnapshots,
  listVolumes,
  planInitialize,
  resizeVolume,
  restoreVolumeSnapshot,
  scrubStore,
  volumeUsage,
} from "../lib/ctl/volume_ops.ts";
import { LocalNode } from "../lib/node/local_node.ts";
import type { TorusNode } from "../lib/node/torus_node.ts";
import {
  addPeers,
  getRing,
  listPeers,
  manualChange,
  removePeers,
  setReplication,
} from "../lib/ctl/cluster_ops.ts";
import { ClusterAdmin, clusterRequested, requireCluster } from "../lib/ctl/cluster_flags.ts";
import { wipeEtcd } from "../lib/metadata/etcd_metadata.ts";
import { etcdOptionsFromFlags } from "../lib/config/etcd_flags.ts";
import { parseRingType, ringTypeName } from "../lib/ring/ring_codec.ts";
import { SystemClock } from "../lib/clock.ts";
import { stderrLogger } from "../lib/log.ts";
import { formatSize } from "../lib/size.ts";
import { VERSION } from "../lib/version.ts";
import { TorusError } from "../lib/errors.ts";

const GLOBAL: Record<string, FlagSpec> = {
  ...ETCD_FLAGS,
  "data-dir": {
    type: "string",
    default: "./torus-data",
    description: "data directory of the embedded metadata and block store",
    valueName: "DIR",
  },
  output: {
    type: "string",
    short: "o",
    default: "table",
    description: "listing format: table, csv or json",
    valueName: "FORMAT",
  },
};

type Flags = Record<string, string | boolean | undefined>;

/**
 * Runs `fn` on the cluster the etcd flags name, or else on the data
 * directory (created when `create`).
 */
async function withNode<T>(
  flags: Flags,
  fn: (node: TorusNode) => Promise<T>,
  create = false,
): Promise<T> {
  const node: TorusNode = clusterRequested(flags)
    ? await ClusterAdmin.open(flags, {
      clock: new SystemClock(),
      logger: stderrLogger("warn", "torusctl"),
    })
    : await LocalNode.open({ dataDir: String(flags["data-dir"]), create });
  try {
    return await fn(node);
  } finally {
    await node.close();
  }
}

/**
 * The volumes of a data directory's own block store, for commands that work
 * on it directly.
 *
 * @throws {UsageError} with `inCluster` on a cluster, where each torusd does it.
 */
async function localVolumes(node: TorusNode, inCluster: string): Promise<VolumeContext> {
  if (node instanceof ClusterAdmin) throw new UsageError(inCluster);
  return await node.volumes();
}

function format(flags: Flags): OutputFormat {
  return parseOutputFormat(String(flags.output));
}

const volumeCreate: Command = {
  name: "create-block",
  summary: "create a block volume",
  usage: "NAME SIZE",
  args: [2, 2],
  run: ({ flags, args }) =>
    withNode(flags, async (node) => {
      const volume = await createVolume(node, args[0]!, args[1]!);
      print(`created volume "${volume.name}" (${formatSize(volume.sizeBytes)})`);
    }),
};

const volumeResize: Command = {
  name: "resize",
  summary: "grow a volume to SIZE, or by +SIZE (new NBD connections see it; shrinking is refused)",
  usage: "NAME [+]SIZE",
  args: [2, 2],
  run: ({ flags, args }) =>
    withNode(flags, async (node) => {
      const { before, after } = await resizeVolume(node, args[0]!, args[1]!);
      print(
        `resized volume "${after.name}" from ${formatSize(before.sizeBytes)} to ${
          formatSize(after.sizeBytes)
        }`,
      );
    }),
};

const snapshot: Command = {
  name: "snapshot",
  summary: "create, list, delete and restore snapshots",
  subcommands: [
    {
      name: "create",
      summary: "snapshot the volume's last synced state",
      usage: "VOLUME@NAME",
      args: [1, 1],
      run: ({ flags, args }) =>
        withNode(flags, async (node) => {
          const info = await createSnapshot(node, args[0]!);
          print(`created snapshot "${args[0]}" of INode ${info.inode.inode}`);
        }),
    },
    {
      name: "list",
      summary: "list a volume's snapshots",
      usage: "VOLUME",
      args: [1, 1],
      run: ({ flags, args }) =>
        withNode(flags, async (node) => {
          const snapshots = await listSnapshots(node, args[0]!);
          const output = format(flags);
          if (output === "table") print(`Volume: ${args[0]}`);
          print(renderListing(
            output,
            snapshots.map((s) => ({
              name: s.name,
              timestamp: new Date(s.createdMs).toISOString(),
              inode: s.inode.inode,
            })),
            [
              { header: "snapshot name", value: (s) => s.name },
              { header: "timestamp", value: (s) => s.timestamp },
            ],
          ));
        }),
    },
    {
      name: "delete",
      summary: "delete a snapshot",
      usage: "VOLUME@NAME",
      args: [1, 1],
      run: ({ flags, args }) =>
        withNode(flags, async (node) => {
          await deleteSnapshot(node, args[0]!);
          print(`deleted snapshot "${args[0]}"`);
        }),
    },
    {
      name: "restore",
      summary: "make a snapshot the volume's current state (volume must not be in use)",
      usage: "VOLUME@NAME",
      args: [1, 1],
      run: ({ flags, args }) =>
        withNode(flags, async (node) => {
          await restoreVolumeSnapshot(node, args[0]!);
          print(`restored "${args[0]}"`);
        }),
    },
  ],
};

const progressFlag: Record<string, FlagSpec> = {
  progress: { type: "boolean", short: "p", description: "show progress (on a terminal)" },
};

const block: Command = {
  name: "block",
  summary: "block volume data: create, resize, snapshot, clone, dump, load, diff and apply-diff",
  subcommands: [
    { ...volumeCreate, name: "create" },
    volumeResize,
    snapshot,
    {
      name: "dump",
      summary: "copy a volume's data to a file, or to stdout with -",
      usage: "VOLUME FILE|-",
      args: [2, 2],
      flags: progressFlag,
      run: ({ flags, args }) =>
        withNode(flags, async (node) => {
          const toStdout = args[1] === "-";
          const file = toStdout
            ? null
            : await Deno.open(args[1]!, { write: true, create: true, truncate: true });
          const writer = (file ? file.writable : Deno.stdout.writable).getWriter();
          const bar = progressBar(`dump ${args[0]}`);
          try {
            const bytes = await dumpVolume(node, args[0]!, writer, bar.update);
            bar.end();
            if (!toStdout) console.error(`copied ${bytes} bytes`);
          } finally {
            await writer.close().catch(() => {});
          }
        }),
    },
    {
      name: "load",
      summary: "create a volume from a file",
      usage: "FILE VOLUME [SIZE]",
      args: [2, 3],
      flags: progressFlag,
      run: ({ flags, args }) =>
        withNode(flags, async (node) => {
          const file = await Deno.open(args[0]!);
          const { size } = await file.stat();
          const reader = file.readable.getReader();
          const bar = progressBar(`load ${args[1]}`);
          try {
            const bytes = await loadVolume(node, reader, size, args[1]!, args[2], bar.update);
            bar.end();
            print(`copied ${bytes} bytes`);
          } finally {
            reader.releaseLock();
            await file.readable.cancel().catch(() => {});
          }
        }),
    },
    {
      name: "clone",
      summary: "create NEW as a copy-on-write clone of VOLUME@SNAPSHOT (nothing is copied)",
      usage: "VOLUME@SNAPSHOT NEW",
      args: [2, 2],
      run: ({ flags, args }) =>
        withNode(flags, async (node) => {
          const clone = await cloneSnapshot(node, args[0]!, args[1]!);
          print(`created volume "${clone.name}" (${formatSize(clone.sizeBytes)}) from ${args[0]}`);
        }),
    },
    {
      name: "diff",
      summary: "write what changed in VOLUME@TO since --from SNAPSHOT (all of it without) " +
        "to a file, or to stdout with -",
      usage: "VOLUME@TO FILE|-",
      args: [2, 2],
      flags: {
        from: {
          type: "string",
          description: "the older snapshot of the same volume",
          valueName: "SNAPSHOT",
        },
      },
      run: ({ flags, args }) =>
        withNode(flags, async (node) => {
          const toStdout = args[1] === "-";
          const file = toStdout
            ? null
            : await Deno.open(args[1]!, { write: true, create: true, truncate: true });
          const writer = (file ? file.writable : Deno.stdout.writable).getWriter();
          try {
            const from = flags.from === undefined ? undefined : String(flags.from);
            const summary = await exportDiff(node, args[0]!, from, writer);
            console.error(
              `wrote ${summary.dataBlocks} changed blocks, ${summary.zeroBlocks} trimmed, ` +
                `${summary.unchangedBlocks} unchanged (${formatSize(summary.streamBytes)})`,
            );
          } finally {
            await writer.close().catch(() => {});
          }
        }),
    },
    {
      name: "apply-diff",
      summary: "apply a diff from block diff to VOLUME (at the diff's FROM snapshot, or new), " +
        "then snapshot it as TO",
      usage: "FILE|- VOLUME",
      args: [2, 2],
      run: ({ flags, args }) =>
        withNode(flags, async (node) => {
          const file = args[0] === "-" ? null : await Deno.open(args[0]!);
          const readable = file ? file.readable : Deno.stdin.readable;
          const reader = readable.getReader();
          try {
            const summary = await applyDiff(node, reader, args[1]!);
            print(
              `applied ${summary.from === "" ? "" : `${summary.from}..`}${summary.to} to ` +
                `"${summary.volume}": ${formatSize(summary.dataBytes)} written, ` +
                `${formatSize(summary.zeroBytes)} zeroed; snapshot ${summary.volume}@${summary.to}`,
            );
          } finally {
            reader.releaseLock();
            await readable.cancel().catch(() => {});
          }
        }),
    },
  ],
};

const config: Command = {
  name: "config",
  summary: "save etcd settings as a profile of ~/.torus/config.json, or print it with --view",
  flags: {
    ...ETCD_FLAGS,
    view: { type: "boolean", description: "print the config file (or --profile's entry)" },
  },
  run: async ({ flags }) => {
    const path = configPathFromFlags(flags);
    const profile = profileFromEtcdFlags(flags);
    if (flags.view) {
      if (Object.keys(profile).length > 0) {
        throw new UsageError("--view prints the config file: drop the --etcd flags to view it");
      }
      const name = flags.profile === undefined ? undefined : profileFromFlags(flags);
      return print(await viewCliConfig(path, name));
    }
    const name = profileFromFlags(flags);
    await saveProfile(path, name, profile);
    print(`saved profile "${name}" in ${path}`);
  },
};

const listPeersCommand: Command = {
  name: "list-peers",
  summary: "cluster: list storage peers, ring membership and balance",
  run: ({ flags }) =>
    withNode(flags, async (node) => {
      const listing = await listPeers(await requireCluster(node));
      const now = Date.now();
      print(renderListing(format(flags), listing.rows, [
        { header: "address", value: (row) => row.address },
        { header: "uuid", value: (row) => row.uuid },
        {
          header: "size",
          value: (row) => row.sizeBytes === null ? "???" : formatSize(row.sizeBytes),
        },
        {
          header: "used",
          value: (row) => row.usedBytes === null ? "???" : formatSize(row.usedBytes),
        },
        { header: "member", value: (row) => row.member },
        {
          header: "updated",
          value: (row) =>
            row.lastSeenMs === 0 ? "Missing" : `${Math.round((now - row.lastSeenMs) / 1000)}s ago`,
        },
        { header: "rebalancing", value: (row) => String(row.rebalancing) },
      ]));
      if (format(flags) === "table") {
        print(
          `Balanced: ${listing.balanced} Usage: ${
            (listing.usage * 100).toFixed(2)
          }% Ring: version ${listing.ring.version}, replication ${listing.ring.replication}`,
        );
      }
    }),
};

const root: Command = {
  name: "torusctl",
  summary: "administer Torus: volumes, snapshots, a data directory or a cluster (with --etcd)",
  subcommands: [
    {
      name: "init",
      summary: "format the data directory's metadata",
      flags: {
        "block-size": {
          type: "string",
          default: "512KiB",
          description: "size of every block, a power of two from 256B to 16MiB",
          valueName: "SIZE",
        },
        "block-spec": {
          type: "string",
          default: "crc",
          description: "blockset spec of new volumes (base is appended)",
          valueName: "SPEC",
        },
        "no-ring": {
          type: "boolean",
          description: "cluster: start with an empty ring instead of ketama (replication 2)",
        },
      },
      run: ({ flags }) => {
        const plan = planInitialize({
          blockSizeText: String(flags["block-size"]),
          blockSpec: String(flags["block-spec"]),
          noRing: flags["no-ring"] === true,
        });
        return withNode(flags, async (node) => {
          await initialize(node, plan);
          const metadata = await node.globalMetadata();
          print(
            `initialized ${node.location}: block size ${metadata.blockSizeBytes} bytes, block spec ${metadata.defaultBlockSpec}`,
          );
        }, true);
      },
    },
    {
      name: "wipe",
      summary: "cluster: delete every Torus key from etcd (all volumes' metadata)",
      flags: {
        "yes-i-am-sure": { type: "boolean", description: "do not ask" },
      },
      run: async ({ flags }) => {
        if (!clusterRequested(flags)) {
          throw new UsageError("wipe needs a cluster: give --etcd HOST:PORT (or --profile NAME)");
        }
        if (flags["yes-i-am-sure"] !== true) {
          throw new UsageError("wipe deletes every volume's metadata: add --yes-i-am-sure");
        }
        const deleted = await wipeEtcd(
          await etcdOptionsFromFlags(flags, { clock: new SystemClock() }),
        );
        print(`wiped ${deleted} keys`);
      },
    },
    listPeersCommand,
    {
      name: "peer",
      summary: "cluster: add, remove and list storage peers",
      subcommands: [
        { ...listPeersCommand, name: "list" },
        {
          name: "add",
          summary: "add live peers (by address or uuid) to the ring",
          usage: "ADDRESS|UUID...",
          args: [0, 1000],
          flags: { "all-peers": { type: "boolean", description: "add every live storage peer" } },
          run: ({ flags, args }) =>
            withNode(flags, async (node) => {
              if (args.length === 0 && flags["all-peers"] !== true) {
                throw new UsageError("name the peers to add, or give --all-peers");
              }
              const ring = await addPeers(await requireCluster(node), args, {
                allPeers: flags["all-peers"] === true,
              });
              print(`ring version ${ring.version}: ${ring.members().length} members`);
            }),
        },
        {
          name: "remove",
          summary: "remove peers (by address or uuid) from the ring",
          usage: "ADDRESS|UUID...",
          args: [1, 1000],
          flags: {
            force: { type: "boolean", description: "also remove peers that are not alive" },
          },
          run: ({ flags, args }) =>
            withNode(flags, async (node) => {
              const ring = await removePeers(await requireCluster(node), args, {
                force: flags.force === true,
              });
              print(`ring version ${ring.version}: ${ring.members().length} members`);
            }),
        },
      ],
    },
    {
      name: "ring",
      summary: "cluster: show and change the placement ring",
      subcommands: [
        {
          name: "get",
          summary: "describe the ring",
          run: ({ flags }) =>
            withNode(flags, async (node) => {
              print((await getRing(await requireCluster(node))).describe());
            }),
        },
        {
          name: "set-replication",
          summary: "set how many copies of every block the ring keeps",
          usage: "AMOUNT",
          args: [1, 1],
          run: ({ flags, args }) =>
            withNode(flags, async (node) => {
              const amount = Number(args[0]);
              if (!/^\d+$/.test(args[0]!)) {
                throw new UsageError(`Cannot set replication "${args[0]}": expected a number`);
              }
              const ring = await setReplication(await requireCluster(node), amount);
              print(`ring version ${ring.version}: replication ${ring.replication}`);
            }),
        },
        {
          name: "manual-change",
          summary: "replace the ring with a new one over chosen live peers",
          flags: {
            type: {
              type: "string",
              default: "ketama",
              description: "ring type: ketama, mod, single or empty",
              valueName: "TYPE",
            },
            uuids: { type: "string", description: "peers, comma separated", valueName: "UUIDS" },
            "all-peers": { type: "boolean", description: "every live storage peer" },
            replication: {
              type: "string",
              short: "r",
              default: "2",
              description: "replication factor",
              valueName: "N",
            },
          },
          run: ({ flags }) =>
            withNode(flags, async (node) => {
              const ring = await manualChange(await requireCluster(node), {
                type: parseRingType(String(flags.type)),
                uuids: String(flags.uuids ?? "").split(",").filter((uuid) => uuid !== ""),
                allPeers: flags["all-peers"] === true,
                replication: Number(flags.replication),
              });
              print(
                `ring version ${ring.version}: ${
                  ringTypeName(ring.type)
                }, ${ring.members().length} members, replication ${ring.replication}`,
              );
            }),
        },
      ],
    },
    {
      name: "volume",
      summary: "list, measure, create, resize and delete volumes",
      subcommands: [
        {
          name: "list",
          summary: "list volumes with their lock status",
          run: ({ flags }) =>
            withNode(flags, async (node) => {
              print(renderListing(format(flags), await listVolumes(node), [
                { header: "volume name", value: (v) => v.name },
                { header: "size", value: (v) => formatSize(v.sizeBytes) },
                { header: "type", value: (v) => v.type },
                { header: "status", value: (v) => v.status },
              ]));
            }),
        },
        {
          name: "du",
          summary: "space each volume takes: its current version, its snapshots, shared as a clone",
          usage: "[NAME]",
          args: [0, 1],
          run: ({ flags, args }) =>
            withNode(flags, async (node) => {
              print(renderListing(format(flags), await volumeUsage(node, args[0]), [
                { header: "volume name", value: (v) => v.name },
                { header: "provisioned", value: (v) => formatSize(v.provisionedBytes) },
                { header: "used", value: (v) => formatSize(v.usedBytes) },
                { header: "snapshots only", value: (v) => formatSize(v.snapshotOnlyBytes) },
                { header: "shared", value: (v) => formatSize(v.sharedBytes) },
                { header: "snapshots", value: (v) => String(v.snapshots) },
              ]));
            }),
        },
        volumeCreate,
        volumeResize,
        {
          name: "delete",
          summary: "delete a volume (refused while it is in use)",
          usage: "NAME",
          args: [1, 1],
          run: ({ flags, args }) =>
            withNode(flags, async (node) => {
              await deleteVolume(node, args[0]!);
              print(`deleted volume "${args[0]}"`);
            }),
        },
      ],
    },
    block,
    config,
    {
      name: "gc",
      summary: "delete blocks no volume or snapshot references (needs torusd stopped)",
      run: ({ flags }) =>
        withNode(flags, async (node) => {
          const context = await localVolumes(
            node,
            "in a cluster every torusd collects its own block store each minute: nothing to run",
          );
          const result = await collectGarbage(context);
          print(`deleted ${result.deletedBlocks} blocks, kept ${result.keptBlocks}`);
        }),
    },
    {
      name: "scrub",
      summary: "verify every stored block's checksums now (needs torusd stopped; torusd scrubs)",
      run: ({ flags }) =>
        withNode(flags, async (node) => {
          const context = await localVolumes(
            node,
            "in a cluster every torusd scrubs its own block store (torusd --scrub-rate): nothing to run",
          );
          const result = await scrubStore(context);
          print(
            `checked ${result.checkedBlocks + result.corruptBlocks + result.failedBlocks} blocks ` +
              `(${formatSize(result.bytes)}): ${result.corruptBlocks} corrupt, ` +
              `${result.failedBlocks} unreadable`,
          );
          for (const block of result.recentCorrupt) print(`corrupt: ${block}`);
          if (result.corruptBlocks + result.failedBlocks > 0) {
            throw new TorusError(
              `${result.corruptBlocks} corrupt and ${result.failedBlocks} unreadable blocks: ` +
                "reads of them fail; restore the volumes they belong to from a copy",
            );
          }
        }),
    },
    {
      name: "version",
      summary: "print the version",
      run: () => {
        print(`torusctl\nVersion: ${VERSION}`);
        return Promise.resolve();
      },
    },
  ],
};

if (import.meta.main) Deno.exit(await runCommand(root, Deno.args, GLOBAL));
