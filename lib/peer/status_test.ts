import assert from "node:assert/strict";
import { AssertionError } from "../assert.ts";
import {
  BlockCorruptError,
  BlockNotFoundError,
  ClosedError,
  OutOfSpaceError,
  PeerUnavailableError,
} from "../errors.ts";
import { PeerStatus } from "./frame.ts";
import { errorForStatus, statusForError, statusName } from "./status.ts";

Deno.test("status: typed errors survive the round trip", () => {
  for (
    const error of [
      new BlockNotFoundError("a"),
      new BlockCorruptError("b"),
      new OutOfSpaceError("c"),
      new RangeError("d"),
    ]
  ) {
    const back = errorForStatus(statusForError(error), error.message, "tdp://peer:1");
    assert.equal(back.constructor, error.constructor);
    assert.ok(back.message.includes(error.message));
    assert.ok(back.message.includes("tdp://peer:1"));
  }
});

Deno.test("status: other failures are internal, a bug is rethrown", () => {
  assert.equal(statusForError(new ClosedError("closed")), PeerStatus.internal);
  assert.equal(statusForError(new Error("disk")), PeerStatus.internal);
  assert.equal(statusForError(new TypeError("x")), PeerStatus.badRequest);
  assert.throws(() => statusForError(new AssertionError("bug")), AssertionError);
  for (const status of [PeerStatus.internal, PeerStatus.shuttingDown, PeerStatus.damaged, 99]) {
    assert.ok(errorForStatus(status, "m", "tdp://p:1") instanceof PeerUnavailableError);
  }
  assert.equal(statusName(PeerStatus.outOfSpace), "OUT_OF_SPACE");
  assert.equal(statusName(99), "status 99");
});
