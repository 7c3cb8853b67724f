/**
 * Test fixture of `sqlite_metadata_test.ts`: a second process on the same
 * database. Usage: `deno run -A _sqlite_worker.ts <db path> [volume] [count]`.
 *
 * It opens the database, prints `ready`, waits for a line on stdin (so that
 * every process starts at once), calls `nextINode` `count` times on the
 * volume, and prints the numbers it got as one JSON array.
 *
 * @module
 */
import { SystemClock } from "../clock.ts";
import { SqliteMetadata } from "./sqlite_metadata.ts";

/** Calls of `nextINode` when the command line does not say. */
const CALLS_DEFAULT = 200;

const [path, volumeName = "shared", countText = String(CALLS_DEFAULT)] = Deno.args;
if (path === undefined) throw new TypeError("Cannot start worker: no database path given");
const metadata = await SqliteMetadata.open({ path, clock: new SystemClock() });
const volume = await metadata.getVolume(volumeName);
console.log("ready");
const reader = Deno.stdin.readable.getReader();
await reader.read();
reader.releaseLock();
const numbers: number[] = [];
for (let index = 0; index < Number(countText); index++) {
  numbers.push(await metadata.nextINode(volume.id));
}
await metadata.close();
console.log(JSON.stringify(numbers));
