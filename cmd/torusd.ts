/**
 * torusd: the Torus storage daemon. Thin wiring: flags here, the daemon in
 * lib/daemon.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { SystemClock } from "../lib/clock.ts";
import { reportError } from "../lib/cli/command.ts";
import { Torusd } from "../lib/daemon/torusd.ts";
import { stderrLogger } from "../lib/log.ts";
import { parseSizeSpec } from "../lib/size.ts";
import { VERSION } from "../lib/version.ts";

const HELP = `torusd - the Torus storage daemon

Usage: torusd [flags]

Flags:
  --data-dir DIR   data directory (default "./torus-data")
  --size SIZE      block store size: bytes with units (10GiB) or N% of the filesystem
                   (default: an existing store keeps its size, a new one gets 1GiB)
  --auto-init      initialize the data directory with defaults when it is not
  --nbd ADDR       serve volumes over NBD at HOST:PORT (export name = volume name)
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
        nbd: { type: "string", default: "" },
        debug: { type: "boolean", default: false },
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
    daemon = await Torusd.start({
      dataDir: values["data-dir"],
      size: values.size === undefined ? undefined : parseSizeSpec(values.size),
      autoInit: values["auto-init"],
      clock: new SystemClock(),
      logger,
      nbdAddress: values.nbd || undefined,
    });
  } catch (error) {
    return reportError("torusd", error);
  }
  const stopped = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stopped.resolve());
  }
  await stopped.promise;
  logger.log("info", "shutting down");
  await daemon.close();
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
