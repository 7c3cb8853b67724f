import assert from "node:assert/strict";
import { ManualClock } from "../clock.ts";
import { MetadataUnavailableError, VolumeInUseError } from "../errors.ts";
import { MemoryMetadata } from "./memory_metadata.ts";
import type { MetadataService } from "./metadata_service.ts";
import { METADATA_RETRY_WINDOW_MS, retryingMetadata } from "./retrying_metadata.ts";

/** A memory service whose calls fail while `down`. */
function flaky(clock: ManualClock) {
  const inner = new MemoryMetadata({ clock });
  const state = { down: false, calls: 0 };
  const service = new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        state.calls++;
        if (state.down) return Promise.reject(new MetadataUnavailableError("etcd is down"));
        return value.apply(target, args);
      };
    },
  }) as MetadataService;
  return { service, state };
}

/** Runs `promise` while advancing the manual clock in steps, until it settles. */
async function drive<T>(clock: ManualClock, promise: Promise<T>, stepMs = 100): Promise<T> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  for (let i = 0; i < 10_000 && !settled; i++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
    clock.advance(stepMs);
  }
  return await promise;
}

Deno.test("retryingMetadata: idempotent calls wait out an outage", async () => {
  const clock = new ManualClock(1_700_000_000_000);
  const { service, state } = flaky(clock);
  await service.initialize({ blockSizeBytes: 4096, defaultBlockSpec: "crc,base" }, {
    version: 1,
    bytes: new Uint8Array(),
  });
  const metadata = retryingMetadata(service, clock);
  const volume = await metadata.createVolume("v", 1 << 20);
  state.down = true;
  const started = clock.nowMs();
  const pending = drive(clock, metadata.nextINode(volume.id));
  // The service comes back after 3 s of the clock.
  while (clock.nowMs() - started < 3_000) await new Promise((resolve) => setTimeout(resolve, 0));
  const failed = state.calls;
  state.down = false;
  assert.equal(await pending, 2);
  assert.ok(failed >= 4, `only ${failed} attempts during the outage`);
});

Deno.test("retryingMetadata: gives up after the window, and never retries a lock", async () => {
  const clock = new ManualClock(1_700_000_000_000);
  const { service, state } = flaky(clock);
  await service.initialize({ blockSizeBytes: 4096, defaultBlockSpec: "crc,base" }, {
    version: 1,
    bytes: new Uint8Array(),
  });
  const metadata = retryingMetadata(service, clock);
  const volume = await metadata.createVolume("v", 1 << 20);
  const lease = await metadata.grantLease(60_000);
  state.down = true;
  const started = clock.nowMs();
  await assert.rejects(drive(clock, metadata.currentINode(volume.id)), MetadataUnavailableError);
  assert.ok(clock.nowMs() - started >= METADATA_RETRY_WINDOW_MS - 2_000);
  const calls = state.calls;
  await assert.rejects(metadata.lockVolume(volume.id, lease), MetadataUnavailableError);
  assert.equal(state.calls, calls + 1, "lockVolume is tried once");
  state.down = false;
  await metadata.lockVolume(volume.id, lease);
  await assert.rejects(metadata.lockVolume(volume.id, lease), VolumeInUseError);
});
