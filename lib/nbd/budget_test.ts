import assert from "node:assert/strict";
import { AssertionError } from "../assert.ts";
import { Budget } from "./budget.ts";

Deno.test("Budget: takes and gives back units", async () => {
  const budget = new Budget(10);
  assert.ok(budget.tryAcquire(4));
  await budget.acquire(6);
  assert.equal(budget.available, 0);
  assert.equal(budget.used, 10);
  assert.equal(budget.tryAcquire(1), false);
  budget.release(10);
  assert.equal(budget.available, 10);
});

Deno.test("Budget: waiters are served first come, first served", async () => {
  const budget = new Budget(10);
  await budget.acquire(8);
  const order: string[] = [];
  const big = budget.acquire(9).then(() => order.push("big"));
  const small = budget.acquire(2).then(() => order.push("small"));
  // A small request that would fit must not jump the queue.
  assert.equal(budget.tryAcquire(1), false);
  assert.equal(budget.waiting, 2);
  budget.release(8);
  await big;
  assert.deepEqual(order, ["big"]);
  budget.release(9);
  await small;
  assert.deepEqual(order, ["big", "small"]);
  assert.equal(budget.available, 8);
});

Deno.test("Budget: over-release and oversized requests are bugs", () => {
  const budget = new Budget(4);
  assert.throws(() => budget.release(1), AssertionError);
  assert.throws(() => budget.tryAcquire(5), AssertionError);
  assert.throws(() => new Budget(0), AssertionError);
  assert.ok(budget.tryAcquire(0));
});
