/**
 * Helpers of the NBD integration tests: find the real NBD clients (failing
 * loudly when one is missing), run them with a time limit, and start an
 * {@linkcode NbdServer} over memory exports on an ephemeral port.
 *
 * @module
 */
import { MemoryExportProvider, type MemoryExportSpec } from "../../lib/nbd/memory_export.ts";
import { NbdServer } from "../../lib/nbd/server.ts";

/** The packages that provide every client these tests run. */
export const INSTALL_HINT = "apt-get install -y libnbd-bin nbdkit fio qemu-utils";

/** Default milliseconds a client may run before it is killed and the test fails. */
export const TOOL_TIMEOUT_MS = 120_000;

/**
 * PATH for the clients: `/usr/bin` first, because a pyenv python earlier on
 * PATH lacks the `nbd` module that `nbdsh` needs; the sbin directories last,
 * for system tools such as losetup and mkfs.ext4.
 */
export function toolPath(): string {
  return `/usr/bin:${Deno.env.get("PATH") ?? ""}:/usr/sbin:/sbin`;
}

/**
 * Returns the path of `name`, or throws naming the packages to install.
 * Never skips: a missing client is a failed test.
 */
export async function requireTool(name: string): Promise<string> {
  for (const dir of toolPath().split(":")) {
    if (dir === "") continue;
    const path = `${dir}/${name}`;
    try {
      const info = await Deno.stat(path);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return path;
    } catch {
      // Not here.
    }
  }
  throw new Error(`${name} is not installed; install the NBD clients with: ${INSTALL_HINT}`);
}

/** The outcome of {@linkcode runTool}. */
export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a client to completion (killing it after `timeoutMs`) and returns its
 * exit code and output; `env` adds to its environment (`LIBNBD_DEBUG`).
 */
export async function runTool(
  name: string,
  args: string[],
  options: { timeoutMs?: number; cwd?: string; env?: Record<string, string> } = {},
): Promise<ToolResult> {
  const path = await requireTool(name);
  const child = new Deno.Command(path, {
    args,
    cwd: options.cwd,
    env: { PATH: toolPath(), LC_ALL: "C", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timeoutMs = options.timeoutMs ?? TOOL_TIMEOUT_MS;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }, timeoutMs);
  try {
    const output = await child.output();
    const decoder = new TextDecoder();
    const result = {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
    if (timedOut) throw new Error(`${name} ${args.join(" ")} timed out after ${timeoutMs} ms`);
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a client and throws with its output unless it exits 0. */
export async function runToolOk(
  name: string,
  args: string[],
  options: { timeoutMs?: number; cwd?: string } = {},
): Promise<ToolResult> {
  const result = await runTool(name, args, options);
  if (result.code !== 0) {
    throw new Error(
      `${name} ${args.join(" ")} exited ${result.code}\n` +
        `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`,
    );
  }
  return result;
}

/** A server under test. */
export interface TestServer {
  server: NbdServer;
  provider: MemoryExportProvider;
  /** `nbd://127.0.0.1:<port>/<name>`. */
  uri(name?: string): string;
  close(): Promise<void>;
}

/** Starts an {@linkcode NbdServer} over memory exports on an ephemeral port. */
export function startServer(specs: MemoryExportSpec[]): TestServer {
  const provider = new MemoryExportProvider(specs);
  const server = NbdServer.listen({
    provider,
    port: 0,
    logger: (entry) => {
      if (entry.level === "error" || Deno.env.get("NBD_TEST_VERBOSE") === "1") {
        console.error(
          `[nbd ${entry.level}] ${entry.peer ?? ""} ${entry.message}`,
          entry.error ?? "",
        );
      }
    },
  });
  return {
    server,
    provider,
    uri: (name = "") => `nbd://127.0.0.1:${server.port}/${name}`,
    close: () => server.close(),
  };
}

/** Writes `sizeBytes` random bytes to a new temporary file and returns its path. */
export async function randomFile(dir: string, name: string, sizeBytes: number): Promise<string> {
  const path = `${dir}/${name}`;
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(1024 * 1024);
  for (let written = 0; written < sizeBytes; written += chunk.length) {
    for (let at = 0; at < chunk.length; at += 65536) {
      crypto.getRandomValues(chunk.subarray(at, at + 65536));
    }
    const part = chunk.subarray(0, Math.min(chunk.length, sizeBytes - written));
    let done = 0;
    while (done < part.length) done += await file.write(part.subarray(done));
  }
  return path;
}
