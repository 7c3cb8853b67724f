import assert from "node:assert/strict";
import { formatNbdLogEntry, type NbdLogEntry, silentLogger, withPeer } from "./log.ts";

Deno.test("withPeer adds the peer to every entry", () => {
  const entries: NbdLogEntry[] = [];
  const log = withPeer((entry) => entries.push(entry), "10.0.0.1:5000");
  log({ level: "info", message: "hello" });
  assert.deepEqual(entries, [{ level: "info", message: "hello", peer: "10.0.0.1:5000" }]);
  silentLogger({ level: "error", message: "dropped" });
});

Deno.test("formatNbdLogEntry: the peer, the message and the error's first line", () => {
  assert.equal(formatNbdLogEntry({ level: "info", message: "hello" }), "hello");
  assert.equal(
    formatNbdLogEntry({ level: "info", message: "hello", peer: "127.0.0.1:5" }),
    "127.0.0.1:5: hello",
  );
  assert.equal(
    formatNbdLogEntry({
      level: "info",
      message: 'open of export "v" refused',
      peer: "127.0.0.1:5",
      error: new Error('Cannot lock volume "v": it is in use by x\nstack'),
    }),
    '127.0.0.1:5: open of export "v" refused: Cannot lock volume "v": it is in use by x',
  );
  assert.equal(formatNbdLogEntry({ level: "warn", message: "m", error: "text" }), "m: text");
  assert.equal(
    formatNbdLogEntry({ level: "warn", message: "m", error: new TypeError("") }),
    "m: TypeError",
  );
});
