/**
 * Helpers of the end-to-end tests that run torusd as a real process: start
 * it on free ports (read from its log), stop it, create volumes with
 * torusctl, find and run the real NBD clients and system tools.
 *
 * @module
 */
import assert from "node:assert/strict";
import { requireTool, runTool, type ToolResult } from "../nbd/_tools.ts";
import { TextLineStream } from "./_lines.ts";
import { ROOT, run } from "./_cli.ts";

/** How long torusd may take to start serving. */
const START_TIMEOUT_MS = 30_000;

/** How long torusd may take to stop after SIGTERM before the test fails. */
const STOP_TIMEOUT_MS = 30_000;

/** A torusd process started by {@linkcode startTorusd}. */
export interface TorusdProcess {
  child: Deno.ChildProcess;
  /** The NBD port. */
  port: number;
  /** The HTTP status port. */
  httpPort: number;
  /** Every line torusd printed on stderr so far. */
  log: string[];
  /** Resolves once torusd's stderr has ended (it exited). */
  drained: Promise<void>;
  /** `nbd://127.0.0.1:<port>/<name>`. */
  uri(name?: string): string;
}

/** Starts torusd on a free NBD port; resolves once it logs that it serves. */
export async function startTorusd(dataDir: string, extra: string[] = []): Promise<TorusdProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}cmd/torusd.ts`,
      "--data-dir",
      dataDir,
      "--nbd",
      "127.0.0.1:0",
      "--http",
      "127.0.0.1:0",
      ...extra,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(new TextLineStream());
  const log: string[] = [];
  const reader = lines.getReader();
  const deadlineMs = Date.now() + START_TIMEOUT_MS;
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`torusd did not start in time:\n${log.join("\n")}`)),
          Math.max(0, deadlineMs - Date.now()),
        );
      });
      const { value, done } = await Promise.race([reader.read(), timeout]).finally(() =>
        clearTimeout(timer)
      );
      if (done) throw new Error(`torusd exited before serving:\n${log.join("\n")}`);
      log.push(value);
      const nbd = /NBD on 127\.0\.0\.1:(\d+)/.exec(log.join("\n"));
      const http = /HTTP status on http:\/\/127\.0\.0\.1:(\d+)/.exec(value);
      if (nbd && http) {
        // Keep draining stderr so the daemon never blocks on a full pipe.
        const drained = (async () => {
          for (;;) {
            const next = await reader.read().catch(() => ({ done: true, value: undefined }));
            if (next.done) break;
            log.push(next.value!);
          }
        })();
        const port = Number(nbd[1]);
        return {
          child,
          port,
          httpPort: Number(http[1]),
          log,
          drained,
          uri: (name = "") => `nbd://127.0.0.1:${port}/${name}`,
        };
      }
    }
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await reader.cancel().catch(() => {});
    await child.status;
    throw error;
  }
}

/**
 * Sends `signal` to torusd (if it still runs) and waits for it to exit and
 * its log to end; a torusd that ignores SIGTERM is killed after a while and
 * the call throws with its log.
 */
export async function stopTorusd(
  daemon: TorusdProcess,
  signal: Deno.Signal = "SIGTERM",
): Promise<Deno.CommandStatus> {
  try {
    daemon.child.kill(signal);
  } catch {
    // Already gone.
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      daemon.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, STOP_TIMEOUT_MS);
  try {
    const status = await daemon.child.status;
    await daemon.drained;
    if (timedOut) {
      throw new Error(
        `torusd did not exit within ${STOP_TIMEOUT_MS} ms of ${signal}:\n${daemon.log.join("\n")}`,
      );
    }
    return status;
  } finally {
    clearTimeout(timer);
  }
}

/** Stops torusd with SIGTERM and asserts that it exited 0. */
export async function stopTorusdCleanly(daemon: TorusdProcess): Promise<void> {
  const status = await stopTorusd(daemon, "SIGTERM");
  assert.equal(
    status.code,
    0,
    `torusd exited ${status.code} (signal ${status.signal}) after SIGTERM:\n${
      daemon.log.join("\n")
    }`,
  );
}

/** Runs `torusctl ARGS --data-dir DATA_DIR` and asserts that it succeeded. */
export async function torusctlOk(dataDir: string, ...args: string[]): Promise<string> {
  const result = await run("torusctl", [...args, "--data-dir", dataDir]);
  assert.equal(
    result.code,
    0,
    `torusctl ${args.join(" ")} exited ${result.code}: ${result.stderr}`,
  );
  return result.stdout;
}

/** Creates a block volume with torusctl. */
export async function createVolume(dataDir: string, name: string, size: string): Promise<void> {
  await torusctlOk(dataDir, "volume", "create-block", name, size);
}

/** The packages of every NBD client these tests run. */
export const NBD_CLIENTS_HINT = "apt-get install -y libnbd-bin nbdkit nbdfuse fio qemu-utils";

/** The package of each system tool the kernel test runs. */
const SYSTEM_PACKAGES: Record<string, string> = {
  losetup: "util-linux",
  mount: "mount",
  umount: "mount",
  "mkfs.ext4": "e2fsprogs",
  e2fsck: "e2fsprogs",
  sync: "coreutils",
};

/**
 * The path of a client or system tool, or throws naming the packages to
 * install. Never skips: a missing tool is a failed test.
 */
export async function requireClient(name: string): Promise<string> {
  try {
    return await requireTool(name);
  } catch (error) {
    const system = SYSTEM_PACKAGES[name];
    const hint = system === undefined ? NBD_CLIENTS_HINT : `apt-get install -y ${system}`;
    throw new Error(`${name} is not installed; install it with: ${hint}`, { cause: error });
  }
}

/** Options of {@linkcode runClient}. */
export interface RunOptions {
  timeoutMs?: number;
  cwd?: string;
}

/**
 * Runs a client or system tool to completion (killing it after `timeoutMs`,
 * default 60 s) and returns its exit code and output.
 */
export async function runClient(
  name: string,
  args: string[],
  options: RunOptions = {},
): Promise<ToolResult> {
  await requireClient(name);
  return await runTool(name, args, { timeoutMs: options.timeoutMs ?? 60_000, cwd: options.cwd });
}

/** Runs a client or system tool and throws with its output unless it exits 0. */
export async function runClientOk(
  name: string,
  args: string[],
  options: RunOptions = {},
): Promise<ToolResult> {
  const result = await runClient(name, args, options);
  if (result.code !== 0) {
    throw new Error(
      `${name} ${args.join(" ")} exited ${result.code}\n` +
        `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`,
    );
  }
  return result;
}

/** The hex SHA-256 of `data`. */
export async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
