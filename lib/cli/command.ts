/**
 * A small command-line framework for the Torus binaries: a tree of commands,
 * flags parsed with `node:util` `parseArgs` (the jsr registry, home of
 * `@std/cli`, is unreachable from our build machines), generated `--help`,
 * and the rule for bad input: one line on stderr naming the problem and what
 * to do, and a non-zero exit.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { TorusError } from "../errors.ts";

/** A flag of a command. */
export interface FlagSpec {
  type: "string" | "boolean";
  short?: string;
  default?: string | boolean;
  description: string;
  /** Shown in help as the value's name. */
  valueName?: string;
}

/** Parsed flags and positional arguments. */
export interface Invocation {
  flags: Record<string, string | boolean | undefined>;
  args: string[];
}

/** A command: either a leaf with `run`, or a group with `subcommands`. */
export interface Command {
  name: string;
  summary: string;
  /** Positional arguments, for help: `NAME SIZE`. */
  usage?: string;
  flags?: Record<string, FlagSpec>;
  /** Smallest and largest number of positional arguments. */
  args?: [number, number];
  subcommands?: Command[];
  run?: (invocation: Invocation) => Promise<void>;
}

/** A usage error: bad flag, argument or value. Exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Exit codes. */
export const ExitCode = { ok: 0, failure: 1, usage: 2 } as const;

/** Writes a line to stdout. */
export function print(line = ""): void {
  Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
}

function helpText(path: string[], command: Command, global: Record<string, FlagSpec>): string {
  const lines = [`${path.join(" ")} - ${command.summary}`, ""];
  if (command.subcommands) {
    lines.push(`Usage: ${path.join(" ")} COMMAND [flags]`, "", "Commands:");
    const width = Math.max(...command.subcommands.map((c) => c.name.length));
    for (const sub of command.subcommands) {
      lines.push(`  ${sub.name.padEnd(width)}  ${sub.summary}`);
    }
  } else {
    lines.push(`Usage: ${path.join(" ")}${command.usage ? " " + command.usage : ""} [flags]`);
  }
  const flags = { ...global, ...command.flags };
  const names = Object.keys(flags);
  if (names.length > 0) {
    lines.push("", "Flags:");
    const rendered = names.map((name) => {
      const spec = flags[name]!;
      const short = spec.short ? `-${spec.short}, ` : "    ";
      const value = spec.type === "string" ? ` ${spec.valueName ?? "VALUE"}` : "";
      return [`${short}--${name}${value}`, spec.description + defaultText(spec)] as const;
    });
    rendered.push(["-h, --help", "show this help"]);
    const width = Math.max(...rendered.map(([left]) => left.length));
    for (const [left, right] of rendered) lines.push(`  ${left.padEnd(width)}  ${right}`);
  }
  if (command.subcommands) {
    lines.push("", `Run "${path.join(" ")} COMMAND --help" for a command's flags.`);
  }
  return lines.join("\n");
}

function defaultText(spec: FlagSpec): string {
  if (spec.default === undefined || spec.default === false) return "";
  return ` (default ${JSON.stringify(spec.default)})`;
}

/**
 * Runs a command tree against `argv` and returns the exit code. Errors become
 * one line on stderr: `UsageError` exits 2, operating errors exit 1.
 */
export async function runCommand(
  root: Command,
  argv: string[],
  global: Record<string, FlagSpec> = {},
): Promise<number> {
  const path = [root.name];
  let command = root;
  let rest = argv;
  try {
    while (command.subcommands) {
      const next = rest[0];
      if (next === undefined || next === "-h" || next === "--help" || next === "help") {
        print(helpText(path, command, global));
        return next === undefined ? ExitCode.usage : ExitCode.ok;
      }
      if (next.startsWith("-") && !command.subcommands.some((c) => c.name === next)) {
        // Global flags may come before the command: find the first positional.
        const index = firstPositional(rest, global);
        if (index < 0) throw new UsageError(`missing command: run "${path.join(" ")} --help"`);
        const name = rest[index]!;
        rest = [name, ...rest.slice(0, index), ...rest.slice(index + 1)];
        continue;
      }
      const sub = command.subcommands.find((c) => c.name === next);
      if (!sub) {
        throw new UsageError(
          `unknown command "${path.join(" ")} ${next}": run "${
            path.join(" ")
          } --help" for the list`,
        );
      }
      path.push(sub.name);
      command = sub;
      rest = rest.slice(1);
    }
    const flags = { ...global, ...command.flags };
    if (rest.includes("-h") || rest.includes("--help")) {
      print(helpText(path, command, global));
      return ExitCode.ok;
    }
    const options = Object.fromEntries(
      Object.entries(flags).map(([name, spec]) => [name, {
        type: spec.type,
        ...(spec.short ? { short: spec.short } : {}),
        ...(spec.default !== undefined ? { default: spec.default } : {}),
      }]),
    );
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
    } catch (error) {
      throw new UsageError(
        `${(error as Error).message.split("\n")[0]}: run "${path.join(" ")} --help"`,
      );
    }
    const [min, max] = command.args ?? [0, 0];
    if (parsed.positionals.length < min || parsed.positionals.length > max) {
      const usage = command.usage ? ` ${command.usage}` : "";
      throw new UsageError(`usage: ${path.join(" ")}${usage} (run "${path.join(" ")} --help")`);
    }
    await command.run!({
      flags: parsed.values as Record<string, string | boolean | undefined>,
      args: parsed.positionals,
    });
    return ExitCode.ok;
  } catch (error) {
    return reportError(path.join(" "), error);
  }
}

/** Index of the first argument that is neither a flag nor a string flag's value, or -1. */
function firstPositional(argv: string[], global: Record<string, FlagSpec>): number {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("-")) return i;
    if (arg.includes("=")) continue;
    const name = arg.replace(/^-+/, "");
    const spec = global[name] ?? Object.values(global).find((s) => s.short === name);
    if (spec?.type === "string") i++; // its value follows
  }
  return -1;
}

/** Prints an error as one line on stderr and returns its exit code. */
export function reportError(commandPath: string, error: unknown): number {
  const program = commandPath.split(" ")[0];
  if (error instanceof UsageError) {
    console.error(`${program}: ${error.message}`);
    return ExitCode.usage;
  }
  // Bad values (sizes, names, addresses) are usage errors; the rest are operating errors.
  const badValue = error instanceof SyntaxError || error instanceof RangeError;
  if (
    badValue || error instanceof TorusError || error instanceof TypeError ||
    error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotFound
  ) {
    console.error(`${program}: ${firstLine((error as Error).message)}`);
    return badValue ? ExitCode.usage : ExitCode.failure;
  }
  console.error(`${program}: ${firstLine(String((error as Error)?.message ?? error))}`);
  if (Deno.env.get("TORUS_DEBUG")) console.error(error);
  return ExitCode.failure;
}

function firstLine(text: string): string {
  return text.split("\n")[0]!;
}
