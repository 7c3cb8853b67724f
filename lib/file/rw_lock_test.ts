import assert from "node:assert/strict";
import { KeyedRwLock, RwLock } from "./rw_lock.ts";

Deno.test("RwLock admits readers together and a writer alone, in arrival order", async () => {
  const lock = new RwLock();
  const events: string[] = [];
  const r1 = await lock.acquire(false);
  const r2 = await lock.acquire(false);
  const w = lock.acquire(true).then((release) => {
    events.push("writer");
    return release;
  });
  const r3 = lock.acquire(false).then((release) => {
    events.push("reader3");
    return release;
  });
  await Promise.resolve();
  assert.deepEqual(events, [], "writer waits for readers; late reader waits for writer");
  r1();
  r2();
  const releaseWriter = await w;
  assert.deepEqual(events, ["writer"]);
  releaseWriter();
  (await r3)();
  assert.deepEqual(events, ["writer", "reader3"]);
  assert.ok(lock.idle);
});

Deno.test("KeyedRwLock serializes writers of one key and drops idle keys", async () => {
  const locks = new KeyedRwLock();
  let inside = 0;
  let most = 0;
  await Promise.all([1, 2, 3].map(() =>
    locks.with(7, true, async () => {
      inside++;
      most = Math.max(most, inside);
      await new Promise((resolve) => setTimeout(resolve, 1));
      inside--;
    })
  ));
  assert.equal(most, 1);
  assert.equal(locks.size, 0);
});

Deno.test("RwLock.readableNow: false while a writer holds or waits, true among readers", async () => {
  const lock = new RwLock();
  assert.equal(lock.readableNow, true);
  const r1 = await lock.acquire(false);
  assert.equal(lock.readableNow, true, "readers do not keep readers out");
  const writing = lock.acquire(true);
  assert.equal(lock.readableNow, false, "a waiting writer goes first");
  r1();
  const w = await writing;
  assert.equal(lock.readableNow, false, "a writer holds it");
  w();
  assert.equal(lock.readableNow, true);
  const keyed = new KeyedRwLock();
  let inside = false;
  const held = keyed.with(7, true, async () => {
    inside = true;
    assert.equal(keyed.readableNow(7), false);
    assert.equal(keyed.readableNow(8), true, "other keys are free");
    await Promise.resolve();
  });
  await held;
  assert.equal(inside, true);
  assert.equal(keyed.readableNow(7), true);
});
