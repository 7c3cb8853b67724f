/**
 * torusctl: administer Torus volumes, snapshots and the data directory.
 * Thin wiring: flags here, operations in lib/ctl.
 *
 * @module
 */
import { type Command, type FlagSpec, print, runCommand, UsageError } from "../lib/cli/command.ts";
import { progressBar } from "../lib/cli/progress.ts";
import { type OutputFormat, parseOutputFormat, renderListing } from "../lib/cli/table.ts";
import { collectGarbage } from "../lib/block/gc.ts";
import {
  configPathFromFlags,
  ETCD_FLAGS,
  profileFromEtcdFlags,
  profileFromFlags,
} from "../lib/config/etcd_flags.ts";
import { saveProfile, viewCliConfig } from "../lib/config/profile.ts";
import { dumpVolume, loadVolume } from "../lib/ctl/dump_load.ts";
import {
  createSnapshot,
  createVolume,
  deleteSnapshot,
  deleteVolume,
  initialize,
  listSnapshots,
  listVolumes,
  restoreVolumeSnapshot,
} from "../lib/ctl/volume_ops.ts";
import { LocalNode } from "../lib/node/local_node.ts";
import { formatSize } from "../lib/size.ts";
import { VERSION } from "../lib/version.ts";

const GLOBAL: Record<string, FlagSpec> = {
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

async function withNode<T>(
  flags: Flags,
  fn: (node: LocalNode) => Promise<T>,
  create = false,
): Promise<T> {
  const node = await LocalNode.open({ dataDir: String(flags["data-dir"]), create });
  try {
    return await fn(node);
  } finally {
    await node.close();
  }
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
  summary: "block volume data: create, snapshot, dump and load",
  subcommands: [
    { ...volumeCreate, name: "create" },
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

const root: Command = {
  name: "torusctl",
  summary: "administer Torus volumes, snapshots and the data directory",
  subcommands: [
    {
      name: "init",
      summary: "format the data directory's metadata",
      flags: {
        "block-size": {
          type: "string",
          default: "512KiB",
          description: "size of every block",
          valueName: "SIZE",
        },
        "block-spec": {
          type: "string",
          default: "crc",
          description: "blockset spec of new volumes (base is appended)",
          valueName: "SPEC",
        },
      },
      run: ({ flags }) =>
        withNode(flags, async (node) => {
          await initialize(node, {
            blockSizeText: String(flags["block-size"]),
            blockSpec: String(flags["block-spec"]),
          });
          const metadata = await node.globalMetadata();
          print(
            `initialized ${
              flags["data-dir"]
            }: block size ${metadata.blockSizeBytes} bytes, block spec ${metadata.defaultBlockSpec}`,
          );
        }, true),
    },
    {
      name: "volume",
      summary: "list, create and delete volumes",
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
        volumeCreate,
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
          const result = await collectGarbage(await node.volumes());
          print(`deleted ${result.deletedBlocks} blocks, kept ${result.keptBlocks}`);
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
