/**
 * torusblk: attach Torus volumes as block devices. Thin wiring.
 *
 * @module
 */
import { type Command, runCommand } from "../lib/cli/command.ts";
import { print } from "../lib/cli/command.ts";
import { VERSION } from "../lib/version.ts";

const root: Command = {
  name: "torusblk",
  summary: "attach Torus volumes as block devices (NBD)",
  subcommands: [
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
