/**
 * Helpers to run the binaries in cmd/ as real processes.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** What a finished command printed. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Deno's cache directory as this process uses it. A child run with another
 * `HOME` (or none) is given it explicitly, or it would look for its cache in
 * the new home and download every package again.
 */
function denoDir(): string | undefined {
  const explicit = Deno.env.get("DENO_DIR");
  if (explicit) return explicit;
  const home = Deno.env.get("HOME");
  const cache = Deno.env.get("XDG_CACHE_HOME") || (home ? join(home, ".cache") : undefined);
  return cache === undefined ? undefined : join(cache, "deno");
}

/** Environment of a command run by {@linkcode run}. */
export interface RunEnvironment {
  /** Variables to set (on top of the test's, unless `clearEnv`). */
  env?: Record<string, string>;
  /** Start from an empty environment (plus `PATH` and `env`). */
  clearEnv?: boolean;
}

/** Runs `cmd/<binary>.ts` with `args`, optionally feeding `stdin`. */
export async function run(
  binary: string,
  args: string[],
  stdin?: Uint8Array,
  environment: RunEnvironment = {},
): Promise<CommandResult> {
  const path = Deno.env.get("PATH");
  const cache = denoDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}cmd/${binary}.ts`, ...args],
    cwd: ROOT,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    env: {
      ...(environment.clearEnv && path !== undefined ? { PATH: path } : {}),
      ...(cache === undefined ? {} : { DENO_DIR: cache }),
      NO_COLOR: "1",
      ...environment.env,
    },
    clearEnv: environment.clearEnv ?? false,
  }).spawn();
  if (stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const output = await child.output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}
