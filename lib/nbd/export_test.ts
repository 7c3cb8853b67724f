import assert from "node:assert/strict";
import { AssertionError } from "../assert.ts";
import {
  ClosedError,
  OutOfSpaceError,
  ReadOnlyError,
  VolumeInUseError,
  VolumeNotFoundError,
} from "../errors.ts";
import {
  errnoForError,
  errorMessage,
  ExportNotFoundError,
  optionErrorForOpenError,
} from "./export.ts";
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_UNKNOWN,
} from "./protocol.ts";

Deno.test("errnoForError maps by class and name", () => {
  assert.equal(errnoForError(new RangeError("past the end")), NBD_EINVAL);
  assert.equal(errnoForError(new OutOfSpaceError("full")), NBD_ENOSPC);
  assert.equal(errnoForError(new ReadOnlyError("ro")), NBD_EPERM);
  // By name, so other modules' classes work too.
  const foreign = new Error("full");
  foreign.name = "OutOfSpaceError";
  assert.equal(errnoForError(foreign), NBD_ENOSPC);
  assert.equal(errnoForError(new ClosedError("closed")), NBD_EIO);
  assert.equal(errnoForError(new Error("disk on fire")), NBD_EIO);
  assert.equal(errnoForError("a string"), NBD_EIO);
  assert.throws(() => errnoForError(new AssertionError("bug")), AssertionError);
});

Deno.test("optionErrorForOpenError: not found is UNKNOWN, anything else POLICY", () => {
  assert.equal(optionErrorForOpenError(new ExportNotFoundError("x")), NBD_REP_ERR_UNKNOWN);
  assert.equal(optionErrorForOpenError(new VolumeNotFoundError("x")), NBD_REP_ERR_UNKNOWN);
  assert.equal(optionErrorForOpenError(new VolumeInUseError("x")), NBD_REP_ERR_POLICY);
  assert.equal(optionErrorForOpenError(new Error("x")), NBD_REP_ERR_POLICY);
  assert.throws(() => optionErrorForOpenError(new AssertionError("bug")), AssertionError);
});

Deno.test("errorMessage is one line", () => {
  assert.equal(errorMessage(new Error("a\nb")), "a");
  assert.equal(errorMessage(new VolumeInUseError("")), "VolumeInUseError");
  assert.equal(errorMessage(42), "42");
});
