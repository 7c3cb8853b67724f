/**
 * Helpers of the end-to-end tests that run torusd as a real process: start
 * it on free ports (read from its log), stop it, create volumes with
 * torusctl, find and run the real NBD clients and system tools.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { requireTool, runTool, toolPath, type ToolResult } from "../nbd/_tools.ts";
import { TextLineStream } from "./_lines.ts";
import { ROOT, run } from "./_cli.ts";

/** How long torusd may take to start serving. */
const START_TIMEOUT_MS = 30_000;

/** How long torusd may take to stop after SIGTERM before the test fails. */
const STOP_TIMEOUT_MS = 30_000;

/** A long-running process started by {@linkcode startProcess}. */
export interface DaemonProcess {
  child: Deno.ChildProcess;
  /** Every line the process printed on stderr so far. */
  log: string[];
  /** Resolves once the process's stderr has ended (it exited). */
  drained: Promise<void>;
}

/** A torusd process started by {@linkcode startTorusd}. */
export interface TorusdProcess extends DaemonProcess {
  /** The NBD port. */
  port: number;
  /** The HTTP status port. */
  httpPort: number;
  /** `nbd://127.0.0.1:<port>/<name>`. */
  uri(name?: string): string;
}

/** Options of {@linkcode startProcess}. */
export interface StartProcessOptions {
  /** `cmd/<binary>.ts` to run with `deno run -A`. */
  binary: string;
  args: string[];
  /**
   * Called with the whole log after each new line; the process is ready
   * when it returns something other than undefined, which
   * {@linkcode startProcess} returns.
   */
  ready: (log: string) => RegExpExecArray[] | undefined;
  /** A command that runs deno (`["ip", "netns", "exec", "NS"]`); it must exec it. */
  wrapper?: string[];
  /** How long the process may take to get ready; default 30 s. */
  timeoutMs?: number;
  /** Variables added to the process's environment. */
  env?: Record<string, string>;
  /** Called with the pid as soon as the process is spawned (to clean it up if the test dies). */
  spawned?: (pid: number) => void;
}

/**
 * Starts `deno run -A cmd/<binary>.ts ARGS` (under `wrapper`, if any) and
 * resolves once `ready` matches its stderr; the log keeps being collected
 * (so the process never blocks on a full pipe). A process that exits or
 * does not get ready in time is killed and the call throws with its log.
 */
export async function startProcess(
  options: StartProcessOptions,
): Promise<{ process: DaemonProcess; match: RegExpExecArray[] }> {
  const [command, ...prefix] = [...(options.wrapper ?? []), Deno.execPath()];
  const child = new Deno.Command(command!, {
    args: [...prefix, "run", "-A", `${ROOT}cmd/${options.binary}.ts`, ...options.args],
    env: options.env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  options.spawned?.(child.pid);
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(new TextLineStream());
  const log: string[] = [];
  const reader = lines.getReader();
  const timeoutMs = options.timeoutMs ?? START_TIMEOUT_MS;
  const deadlineMs = Date.now() + timeoutMs;
  const name = options.binary;
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new Error(`${name} did not start within ${timeoutMs} ms:\n${log.join("\n")}`)),
          Math.max(0, deadlineMs - Date.now()),
        );
      });
      const { value, done } = await Promise.race([reader.read(), timeout]).finally(() =>
        clearTimeout(timer)
      );
      if (done) {
        const status = await child.status;
        throw new Error(`${name} exited ${status.code} before it was ready:\n${log.join("\n")}`);
      }
      log.push(value);
      const match = options.ready(log.join("\n"));
      if (match !== undefined) {
        const drained = (async () => {
          for (;;) {
            const next = await reader.read().catch(() => ({ done: true, value: undefined }));
            if (next.done) break;
            log.push(next.value!);
          }
        })();
        return { process: { child, log, drained }, match };
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

/** Every pattern's match in `log`, or undefined unless all match. */
export function allMatch(log: string, patterns: RegExp[]): RegExpExecArray[] | undefined {
  const matches: RegExpExecArray[] = [];
  for (const pattern of patterns) {
    const match = pattern.exec(log);
    if (match === null) return undefined;
    matches.push(match);
  }
  return matches;
}

/** Starts torusd on a free NBD port; resolves once it logs that it serves. */
export async function startTorusd(dataDir: string, extra: string[] = []): Promise<TorusdProcess> {
  const { process, match } = await startProcess({
    binary: "torusd",
    args: ["--data-dir", dataDir, "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0", ...extra],
    ready: (log) =>
      allMatch(log, [/NBD on 127\.0\.0\.1:(\d+)/, /HTTP status on http:\/\/127\.0\.0\.1:(\d+)/]),
  });
  const port = Number(match[0]![1]);
  return {
    ...process,
    port,
    httpPort: Number(match[1]![1]),
    uri: (name = "") => `nbd://127.0.0.1:${port}/${name}`,
  };
}

/**
 * Sends `signal` to torusd (or another {@linkcode DaemonProcess}) if it still
 * runs, and waits for it to exit and its log to end; a process that ignores
 * SIGTERM is killed after a while and the call throws with its log.
 */
export async function stopTorusd(
  daemon: DaemonProcess,
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
        `process ${daemon.child.pid} did not exit within ${STOP_TIMEOUT_MS} ms of ${signal}:\n${
          daemon.log.join("\n")
        }`,
      );
    }
    return status;
  } finally {
    clearTimeout(timer);
  }
}

/** Stops torusd with SIGTERM and asserts that it exited 0. */
export async function stopTorusdCleanly(daemon: DaemonProcess): Promise<void> {
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
  /** Variables added to the tool's environment. */
  env?: Record<string, string>;
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
  return await runTool(name, args, { ...options, timeoutMs: options.timeoutMs ?? 60_000 });
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

/** Runs a Python script in `nbdsh -u URI`; the script fails the test with `assert`. */
export async function nbdsh(
  uri: string,
  script: string,
  options: RunOptions = {},
): Promise<string> {
  const { stdout } = await runClientOk("nbdsh", ["-u", uri, "-c", script], options);
  return stdout;
}

/** What a script run by {@linkcode spawnNbdsh} printed, and how it ended. */
export interface NbdshResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** An nbdsh running a script in the background. */
export interface NbdshProcess {
  /** Lines the script printed on stdout so far. */
  stdout: string[];
  /** Resolves with the exit status once the script has ended. */
  status: Promise<Deno.CommandStatus>;
  /** Waits (up to `timeoutMs`) until a line matches `pattern`; throws if nbdsh exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /**
   * Closes the script's stdin (its signal to finish) and waits for it to
   * exit, killing it after `timeoutMs` (default 30 s).
   */
  release(timeoutMs?: number): Promise<NbdshResult>;
}

/**
 * Starts `nbdsh -u URI -c SCRIPT` in the background. The script learns that
 * the test wants it to finish when its stdin reaches end of file.
 */
export async function spawnNbdsh(uri: string, script: string): Promise<NbdshProcess> {
  const path = await requireClient("nbdsh");
  const child = new Deno.Command(path, {
    args: ["-u", uri, "-c", script],
    env: { PATH: toolPath(), LC_ALL: "C", PYTHONUNBUFFERED: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream())
    .pipeThrough(new TextLineStream()).getReader();
  const stdout: string[] = [];
  const stdoutDone = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      stdout.push(value);
    }
  })();
  const writer = child.stdin.getWriter();
  let exited = false;
  const status = child.status.then((status) => {
    exited = true;
    return status;
  });
  const release = async (timeoutMs = 30_000) => {
    await writer.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, timeoutMs);
    try {
      const { code } = await status;
      await stdoutDone;
      return { code, stdout: stdout.join("\n"), stderr: await stderr };
    } finally {
      clearTimeout(timer);
    }
  };
  const waitFor = async (pattern: RegExp, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = stdout.find((line) => pattern.test(line));
      if (line !== undefined) return line;
      if (exited || Date.now() > deadline) {
        const result = await release();
        throw new Error(
          `nbdsh ${
            exited ? "exited" : "timed out"
          } before printing ${pattern} (exit ${result.code}):\n` +
            `${result.stdout}\n${result.stderr}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  return { stdout, status, waitFor, release };
}

/** An nbdsh connection held open by the test until {@linkcode HeldClient.release}. */
export interface HeldClient {
  /** Lets the script finish; resolves with its exit code and output. */
  release(): Promise<NbdshResult>;
}

/**
 * Starts `nbdsh -u URI` running `setup`, waits until it has run, and keeps
 * the connection open until released; then `after` runs.
 */
export async function holdClient(uri: string, setup: string, after = ""): Promise<HeldClient> {
  const script = `import sys\n${setup}\nprint("READY", flush=True)\nsys.stdin.read()\n${after}\n`;
  const held = await spawnNbdsh(uri, script);
  await held.waitFor(/^READY$/);
  return { release: () => held.release() };
}

/** Asserts that two buffers are equal, naming the first differing byte. */
export function assertSameBytes(got: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(got.length, expected.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== expected[i]) {
      assert.fail(`${what}: byte ${i} is ${got[i]}, expected ${expected[i]}`);
    }
  }
}

/** Reads a whole export with nbdcopy. */
export async function readExport(dir: string, uri: string): Promise<Uint8Array> {
  const out = join(dir, `read-${crypto.randomUUID()}.bin`);
  await runClientOk("nbdcopy", [uri, out]);
  try {
    return await Deno.readFile(out);
  } finally {
    await Deno.remove(out);
  }
}

/**
 * Waits until an export opens: a volume whose lock a killed process held is
 * "in use" until that process's lease lapses.
 */
export async function waitUntilOpens(uri: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await runClient("nbdinfo", ["--size", uri]);
    if (result.code === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`${uri} did not open within ${timeoutMs} ms: ${result.stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Flips one byte of the file at `path` at `offsetBytes` (a corruption on disk). */
export async function flipByte(path: string, offsetBytes: number, mask = 0xff): Promise<void> {
  const file = await Deno.open(path, { read: true, write: true });
  try {
    const byte = new Uint8Array(1);
    await file.seek(offsetBytes, Deno.SeekMode.Start);
    if ((await file.read(byte)) !== 1) throw new Error(`${path} has no byte at ${offsetBytes}`);
    byte[0] = byte[0]! ^ mask;
    await file.seek(offsetBytes, Deno.SeekMode.Start);
    await file.write(byte);
  } finally {
    file.close();
  }
}
