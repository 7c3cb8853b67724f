import assert from "node:assert/strict";
import { type NbdLogEntry, silentLogger, withPeer } from "./log.ts";

Deno.test("withPeer adds the peer to every entry", () => {
  const entries: NbdLogEntry[] = [];
  const log = withPeer((entry) => entries.push(entry), "10.0.0.1:5000");
  log({ level: "info", message: "hello" });
  assert.deepEqual(entries, [{ level: "info", message: "hello", peer: "10.0.0.1:5000" }]);
  silentLogger({ level: "error", message: "dropped" });
});
