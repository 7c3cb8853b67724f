import assert from "node:assert/strict";
import { INSTALL_HINT, requireTool, runTool } from "./_tools.ts";

Deno.test("a missing NBD client fails loudly with the packages to install", async () => {
  await assert.rejects(
    () => requireTool("nbd-client-that-does-not-exist"),
    (error: Error) => {
      assert.match(error.message, /nbd-client-that-does-not-exist is not installed/);
      assert.ok(error.message.includes("apt-get install -y libnbd-bin nbdkit fio qemu-utils"));
      return true;
    },
  );
  assert.equal(INSTALL_HINT, "apt-get install -y libnbd-bin nbdkit fio qemu-utils");
  await assert.rejects(() => runTool("nbd-client-that-does-not-exist", []), /apt-get install/);
});

Deno.test("every client the NBD tests use is installed", async () => {
  for (const tool of ["nbdinfo", "nbdsh", "nbdcopy", "nbdkit", "fio", "qemu-img"]) {
    await requireTool(tool);
  }
});
