/**
 * torusd: the Torus storage daemon. Thin wiring: flags here, the daemon in
 * lib/daemon.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { SystemClock } from "../lib/clock.ts";
import { reportError } from "../lib/cli/command.ts";
import { Torusd, type TorusdClusterOptions } from "../lib/daemon/torusd.ts";
import { clusterNodeOptions, clusterRequested } from "../lib/ctl/cluster_flags.ts";
import { stderrLogger } from "../lib/log.ts";
import { parseSize, parseSizeSpec } from "../lib/size.ts";
import { VERSION } from "../lib/version.ts";

const HELP = `torusd - the Torus storage daemon

Usage: torusd [flags]

Flags:
  --data-dir DIR   data directory (default "./torus-data")
  --size SIZE      block store size: bytes with units (10GiB) or N% of the filesystem
                   (default: an existing store keeps its size, a new one gets 1GiB)
  --auto-init      initialize the data directory with defaults when it is not
  --block-size SIZE block size --auto-init gives a new data directory: a power of two from
                    256B to 16MiB (default 512KiB)
  --nbd ADDR       serve volumes over NBD at HOST:PORT (export name = volume name)
  --http ADDR      serve /healthz and /metrics at HOST:PORT
  --scrub-rate SIZE verify the stored blocks' checksums in the background at SIZE per
                    second (default 8MiB; 0 turns scrubbing off)

Cluster mode (metadata in etcd, blocks on the ring's peers), chosen by any etcd flag:
  --etcd, -C ENDPOINTS   etcd endpoints, comma separated (host:port, http://, https://)
  --etcd-ca-file FILE    CA of etcd's certificate (enables TLS)
  --etcd-cert-file FILE  client certificate for etcd
  --etcd-key-file FILE   key of the client certificate
  --config FILE          client config (default ~/.torus/config.json), see torusctl config
  --profile NAME         profile of the client config
  --peer-address URL     serve blocks to peers at tdp://HOST:PORT (default port 40000);
                         without it this torusd is a client of the cluster
  --auto-join            add this node to the ring when it is not a member
  --auto-evict-after SECONDS  remove a ring member down this long, so that its blocks are
                         copied back to full replication (default 600; 0: never, an
                         operator runs torusctl peer remove --force)
  --read-level LEVEL     block (default), seq or spread
  --write-level LEVEL    all (default), one or local
  --read-cache-size SIZE memory for blocks read from peers (default 50MiB, 0 disables)
  --debug          log debug messages
  --version        print the version
  -h, --help       show this help`;

async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        "data-dir": { type: "string", default: "./torus-data" },
        size: { type: "string" },
        "auto-init": { type: "boolean", default: false },
        "block-size": { type: "string" },
        nbd: { type: "string", default: "" },
        http: { type: "string", default: "" },
        "scrub-rate": { type: "string" },
        debug: { type: "boolean", default: false },
        etcd: { type: "string", short: "C" },
        "etcd-ca-file": { type: "string" },
        "etcd-cert-file": { type: "string" },
        "etcd-key-file": { type: "string" },
        config: { type: "string" },
        profile: { type: "string" },
        "peer-address": { type: "string" },
        "auto-join": { type: "boolean", default: false },
        "auto-evict-after": { type: "string" },
        "read-level": { type: "string", default: "block" },
        "write-level": { type: "string", default: "all" },
        "read-cache-size": { type: "string", default: "50MiB" },
        version: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    console.error(`torusd: ${(error as Error).message.split("\n")[0]}: run "torusd --help"`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.version) {
    console.log(`torusd\nVersion: ${VERSION}`);
    return 0;
  }
  const logger = stderrLogger(values.debug ? "debug" : "info", "torusd");
  let daemon: Torusd;
  try {
    const clock = new SystemClock();
    const autoEvictAfterMs = parseSeconds("--auto-evict-after", values["auto-evict-after"]);
    let cluster: TorusdClusterOptions | undefined;
    if (clusterRequested(values)) {
      if (values["block-size"] !== undefined) {
        console.error(
          "torusd: --block-size is for a data directory; a cluster's is set by torusctl init",
        );
        return 2;
      }
      cluster = {
        ...await clusterNodeOptions(values, { clock, logger }),
        peerAddress: values["peer-address"],
        autoJoin: values["auto-join"],
        autoEvictAfterMs,
      };
    } else if (
      values["peer-address"] !== undefined || values["auto-join"] ||
      values["auto-evict-after"] !== undefined
    ) {
      console.error(
        "torusd: --peer-address, --auto-join and --auto-evict-after need a cluster: give --etcd HOST:PORT",
      );
      return 2;
    }
    daemon = await Torusd.start({
      cluster,
      dataDir: values["data-dir"],
      size: values.size === undefined ? undefined : parseSizeSpec(values.size),
      autoInit: values["auto-init"],
      blockSizeBytes: values["block-size"] === undefined
        ? undefined
        : parseSize(values["block-size"]),
      clock,
      logger,
      nbdAddress: values.nbd || undefined,
      httpAddress: values.http || undefined,
      scrubBytesPerSecond: values["scrub-rate"] === undefined
        ? undefined
        : parseSize(values["scrub-rate"]),
    });
  } catch (error) {
    return reportError("torusd", error);
  }
  const stopped = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stopped.resolve());
  }
  const nbdPort = daemon.nbd?.port;
  if (nbdPort !== undefined) {
    const host = values.nbd.replace(/:\d*$/, "");
    const flag = clusterRequested(values)
      ? ` --etcd ${values.etcd ?? "(your profile)"}`
      : values["data-dir"] === "./torus-data"
      ? ""
      : ` --data-dir ${values["data-dir"]}`;
    printNextSteps(flag, `${host}:${nbdPort}`);
  }
  await stopped.promise;
  logger.log("info", "shutting down");
  await daemon.close();
  return 0;
}

/**
 * Milliseconds from a flag's whole number of seconds; undefined when absent.
 *
 * @throws {RangeError} naming the flag on anything but a whole number.
 */
function parseSeconds(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text)) {
    throw new RangeError(`Cannot parse ${flag} "${text}": expected a whole number of seconds`);
  }
  return Number(text) * 1000;
}

function printNextSteps(flag: string, nbd: string): void {
  console.error(`
Torus is serving volumes over NBD at ${nbd}. Next:
  deno task torusctl volume create-block vol1 1GiB${flag}
  nbdinfo nbd://${nbd}/vol1                         # check it
  nbdfuse /mnt/vol1 nbd://${nbd}/vol1 &             # a file; then losetup -f --show /mnt/vol1/nbd
  nbd-client -N vol1 ${
    nbd.replace(":", " ")
  } /dev/nbd0   # a kernel block device, where nbd.ko exists
  qemu-system-x86_64 -drive file=nbd://${nbd}/vol1,format=raw ...
Stop with Ctrl-C: requests in flight finish, data is flushed, locks released.
`);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
