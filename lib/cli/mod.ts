/**
 * The command-line framework of the Torus binaries.
 *
 * - `command.ts`: a tree of commands, flag parsing, generated `--help`, and
 *   exit codes ({@linkcode runCommand}, {@linkcode UsageError}).
 * - `table.ts`: listings as aligned tables, CSV rows or JSON.
 * - `progress.ts`: a progress bar on stderr, drawn only on a terminal.
 *
 * @module
 */
export {
  type Command,
  ExitCode,
  type FlagSpec,
  type Invocation,
  print,
  reportError,
  runCommand,
  UsageError,
} from "./command.ts";
export { progressBar } from "./progress.ts";
export {
  type OutputFormat,
  parseOutputFormat,
  renderCsv,
  renderListing,
  renderTable,
} from "./table.ts";
