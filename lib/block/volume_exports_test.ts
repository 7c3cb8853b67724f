import assert from "node:assert/strict";
import { createBlockVolume } from "./block_volume.ts";
import { VolumeExports } from "./volume_exports.ts";
import { testEnv } from "./_test_env.ts";

Deno.test("VolumeExports: a connection joining an open volume sees it grown by a resize since", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 1024);
  const exports = new VolumeExports({ context: env, lease: () => Promise.resolve(env.lease) });
  const first = await exports.open("v");
  await env.metadata.resizeVolume("v", 4096);
  const second = await exports.open("v");
  assert.equal(first.sizeBytes, 1024, "a connection's size is fixed at its handshake");
  assert.equal(second.sizeBytes, 4096);
  const data = new Uint8Array(96).fill(9);
  await second.write(4000, data, { fua: false });
  await second.flush();
  await first.close();
  await second.close();
  const third = await exports.open("v");
  assert.equal(third.sizeBytes, 4096);
  assert.deepEqual(await third.read(4000, 96, new Uint8Array(96)), data);
  await third.close();
  await exports.close();
});

Deno.test("VolumeExports: read-only connections keep the size the volume had when it was opened", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 1024);
  const exports = new VolumeExports({
    context: env,
    lease: () => Promise.resolve(env.lease),
    readOnly: true,
  });
  const first = await exports.open("v");
  await env.metadata.resizeVolume("v", 2048);
  const second = await exports.open("v");
  assert.equal(second.sizeBytes, 1024);
  await first.close();
  await second.close();
  const reopened = await exports.open("v");
  assert.equal(reopened.sizeBytes, 2048, "a new open after the last close sees it");
  await reopened.close();
  await exports.close();
});
