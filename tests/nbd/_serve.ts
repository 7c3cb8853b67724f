/**
 * Runs an {@linkcode NbdServer} over memory exports in its own process, for
 * tests that watch the server from outside (crashes, memory) and for the
 * throughput check.
 *
 * Usage: `deno run -A tests/nbd/_serve.ts [--port N] [--export name:sizeBytes[:ro][:single]]...
 * [--limit name=value]...` (limits as in `NbdServerLimits`).
 *
 * Prints one JSON line `{"port": N}` when listening. Then each line read on
 * stdin is a command: `stats` prints a JSON line of server and process
 * statistics; `close` closes the server and exits.
 *
 * @module
 */
import { MemoryExportProvider, type MemoryExportSpec } from "../../lib/nbd/memory_export.ts";
import { NbdServer, type NbdServerLimits } from "../../lib/nbd/server.ts";

const specs: MemoryExportSpec[] = [];
let port = 0;
const limits: Partial<NbdServerLimits> = {};
const args = [...Deno.args];
while (args.length > 0) {
  const arg = args.shift()!;
  if (arg === "--port") port = Number(args.shift());
  else if (arg === "--export") {
    const [name, size, ...flags] = args.shift()!.split(":");
    specs.push({
      name: name!,
      sizeBytes: Number(size),
      readOnly: flags.includes("ro"),
      multiConn: !flags.includes("single"),
    });
  } else if (arg === "--limit") {
    const [key, value] = args.shift()!.split("=");
    limits[key as keyof NbdServerLimits] = Number(value);
  } else throw new TypeError(`unknown argument ${arg}`);
}
if (specs.length === 0) specs.push({ name: "mem", sizeBytes: 64 * 1024 * 1024 });

const provider = new MemoryExportProvider(specs);
const verbose = Deno.env.get("NBD_SERVE_VERBOSE") === "1";
const server = NbdServer.listen({
  provider,
  port,
  limits,
  logger: (entry) => {
    if (verbose || entry.level === "error") {
      console.error(`[${entry.level}] ${entry.peer ?? ""} ${entry.message}`, entry.error ?? "");
    }
  },
});
console.log(JSON.stringify({ port: server.port }));

const decoder = new TextDecoder();
let pending = "";
for await (const chunk of Deno.stdin.readable) {
  pending += decoder.decode(chunk, { stream: true });
  let newline;
  while ((newline = pending.indexOf("\n")) >= 0) {
    const command = pending.slice(0, newline).trim();
    pending = pending.slice(newline + 1);
    if (command === "stats") {
      console.log(JSON.stringify({
        ...server.stats(),
        openExports: provider.openCount,
        allocatedPages: provider.allocatedPages,
        rssBytes: Deno.memoryUsage().rss,
        heapUsedBytes: Deno.memoryUsage().heapUsed,
      }));
    } else if (command === "close") {
      await server.close();
      Deno.exit(0);
    }
  }
}
await server.close();
