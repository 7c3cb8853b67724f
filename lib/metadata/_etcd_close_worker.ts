/**
 * Test fixture of `etcd_metadata_test.ts`: a process that uses everything of
 * an {@linkcode EtcdMetadata} that runs in the background, then closes it and
 * must exit by itself. Usage: `deno run -A _etcd_close_worker.ts <endpoint> <prefix>`.
 *
 * It opens the service, watches the ring, grants a lease, locks a volume,
 * registers a peer and renews the lease, prints `ready`, waits for a line on
 * stdin, calls `close()`, prints `closed` and returns without `Deno.exit`:
 * the process ends only if nothing (socket, timer, stream) is left running.
 *
 * @module
 */
import { SystemClock } from "../clock.ts";
import { EtcdMetadata } from "./etcd_metadata.ts";

const [endpoint, keyPrefix] = Deno.args;
if (endpoint === undefined || keyPrefix === undefined) {
  throw new TypeError("Cannot start worker: usage: _etcd_close_worker.ts <endpoint> <prefix>");
}
const metadata = await EtcdMetadata.open({
  endpoints: [endpoint],
  keyPrefix,
  clock: new SystemClock(),
});
metadata.watchRing(() => {});
const lease = await metadata.grantLease(10_000);
const volume = await metadata.createVolume(`volume-${Deno.pid}`, 4096);
await metadata.lockVolume(volume.id, lease);
await metadata.registerPeer(lease, {
  uuid: metadata.uuid,
  address: "",
  lastSeenMs: 0,
  totalBlocks: 0,
  usedBlocks: 0,
  rebalancing: false,
  lastRebalanceFinishMs: 0,
  lastRebalanceBlocks: 0,
  protocolVersion: 1,
});
await metadata.renewLease(lease);
await metadata.syncRingWatchers();
console.log("ready");
const reader = Deno.stdin.readable.getReader();
await reader.read();
reader.releaseLock();
await metadata.close();
console.log("closed");
