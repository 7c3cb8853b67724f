/**
 * A progress bar on stderr, drawn only when stderr is a terminal.
 *
 * @module
 */
import { formatSize } from "../size.ts";

/** Width of the bar, in characters. */
const BAR_WIDTH_CHARS = 30;

/** Returns a progress callback, and a function to end the bar's line. */
export function progressBar(
  label: string,
): { update: (done: number, total: number) => void; end: () => void } {
  if (!Deno.stderr.isTerminal()) return { update: () => {}, end: () => {} };
  const encoder = new TextEncoder();
  let drawn = false;
  return {
    update(done, total) {
      const ratio = total > 0 ? Math.min(1, done / total) : 1;
      const filled = Math.round(ratio * BAR_WIDTH_CHARS);
      const bar = "#".repeat(filled) + "-".repeat(BAR_WIDTH_CHARS - filled);
      const text = `\r${label} [${bar}] ${(ratio * 100).toFixed(0).padStart(3)}% ${
        formatSize(done)
      }`;
      Deno.stderr.writeSync(encoder.encode(text));
      drawn = true;
    },
    end() {
      if (drawn) Deno.stderr.writeSync(encoder.encode("\n"));
    },
  };
}
