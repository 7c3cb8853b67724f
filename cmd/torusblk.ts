/**
 * torusblk: attach Torus volumes as block devices. Thin wiring: flags here,
 * the server in lib/daemon.
 *
 * @module
 */
import { type Command, print, runCommand } from "../lib/cli/command.ts";
import { SystemClock } from "../lib/clock.ts";
import { NbdServe } from "../lib/daemon/nbd_serve.ts";
import {
  clusterNodeOptions,
  clusterRequested,
  DATA_FLAGS,
  ETCD_FLAGS,
} from "../lib/ctl/cluster_flags.ts";
import { stderrLogger } from "../lib/log.ts";
import { VERSION } from "../lib/version.ts";

const root: Command = {
  name: "torusblk",
  summary: "attach Torus volumes as block devices (NBD)",
  subcommands: [
    {
      name: "nbdserve",
      summary: "serve volumes over NBD (export name = volume name, VOLUME@SNAPSHOT read-only)",
      flags: {
        "data-dir": {
          type: "string",
          default: "./torus-data",
          description: "data directory (torusd must not be running on it); unused with --etcd",
          valueName: "DIR",
        },
        listen: {
          type: "string",
          short: "l",
          default: "127.0.0.1:10809",
          description: "address to listen on",
          valueName: "HOST:PORT",
        },
        "read-only": { type: "boolean", description: "serve every volume read-only" },
        http: {
          type: "string",
          description: "serve /healthz and /metrics (Prometheus) at this address",
          valueName: "HOST:PORT",
        },
        ...ETCD_FLAGS,
        ...DATA_FLAGS,
        debug: { type: "boolean", description: "log every connection" },
      },
      run: async ({ flags }) => {
        const logger = stderrLogger(flags.debug ? "debug" : "info", "torusblk");
        const clock = new SystemClock();
        const serve = await NbdServe.start({
          cluster: clusterRequested(flags)
            ? await clusterNodeOptions(flags, { clock, logger })
            : undefined,
          dataDir: String(flags["data-dir"]),
          address: String(flags.listen),
          readOnly: flags["read-only"] === true,
          httpAddress: flags.http === undefined ? undefined : String(flags.http),
          clock,
          logger,
        });
        const stopped = Promise.withResolvers<void>();
        for (const signal of ["SIGINT", "SIGTERM"] as const) {
          Deno.addSignalListener(signal, () => stopped.resolve());
        }
        await stopped.promise;
        logger.log("info", "shutting down");
        await serve.close();
      },
    },
    {
      name: "version",
      summary: "print the version",
      run: () => {
        print(`torusblk\nVersion: ${VERSION}`);
        return Promise.resolve();
      },
    },
  ],
};

if (import.meta.main) Deno.exit(await runCommand(root, Deno.args));
