import assert from "node:assert/strict";
import { formatBlockSpec, parseBlockSpec } from "./spec.ts";

Deno.test("parseBlockSpec() accepts the original's forms", () => {
  assert.equal(formatBlockSpec(parseBlockSpec("crc,base")), "crc,base");
  assert.equal(formatBlockSpec(parseBlockSpec("crc")), "crc,base");
  assert.equal(formatBlockSpec(parseBlockSpec("base")), "base");
  assert.equal(formatBlockSpec(parseBlockSpec("CRC, Rep=3, BASE")), "crc,rep=3,base");
  assert.equal(formatBlockSpec(parseBlockSpec("r")), "rep=2,base");
});

Deno.test("parseBlockSpec() rejects bad specs with a SyntaxError", () => {
  for (const bad of ["", "foo", "base,crc", "rep=0", "rep=x", "crc=1", "rep=99", "a=b=c"]) {
    assert.throws(() => parseBlockSpec(bad), SyntaxError, bad);
  }
});
