/**
 * A real kernel block device on torusd: the host has no nbd.ko, so the
 * export becomes a file with nbdfuse and a block device with a loop device
 * (`losetup --direct-io=on`). ext4 is made, mounted, written, unmounted; torusd
 * restarts; the filesystem is checked and every file verified.
 *
 * Needs root (losetup, mount, FUSE); CI runs as root. Whatever fails, the
 * teardown unmounts and detaches everything it set up.
 */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import {
  createVolume,
  requireClient,
  runClient,
  runClientOk,
  sha256,
  startTorusd,
  stopTorusd,
  stopTorusdCleanly,
  type TorusdProcess,
} from "./_torusd.ts";
import { toolPath } from "../nbd/_tools.ts";

const MiB = 1024 * 1024;

/** An NBD export attached as a kernel block device. */
interface Attached {
  /** The nbdfuse mount point; the export is `<mountDir>/nbd`. */
  mountDir: string;
  fuse: Deno.ChildProcess;
  /** nbdfuse's output, once it exits. */
  fuseOutput: Promise<Deno.CommandOutput>;
  /** `/dev/loopN`, once attached. */
  loop: string | null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether `path` is a mount point now. */
async function isMounted(path: string): Promise<boolean> {
  const mounts = await Deno.readTextFile("/proc/self/mounts");
  return mounts.split("\n").some((line) => line.split(" ")[1] === path);
}

/** Unmounts `path` if mounted: retries a busy mount, then detaches it lazily. */
async function unmount(path: string): Promise<void> {
  for (let attempt = 0; await isMounted(path); attempt++) {
    const result = await runClient("umount", attempt < 20 ? [path] : ["-l", path], {
      timeoutMs: 30_000,
    });
    if (result.code !== 0 && attempt >= 20) {
      throw new Error(`umount -l ${path} exited ${result.code}: ${result.stderr}`);
    }
    if (result.code !== 0) await sleep(250);
  }
}

/** Whether a loop device is bound to a file. */
async function isLoopBound(loop: string): Promise<boolean> {
  try {
    await Deno.stat(`/sys/block/${basename(loop)}/loop/backing_file`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs nbdfuse on `uri` and attaches its file to a free loop device with
 * direct I/O. `attachments` hears of every attachment at once, so the
 * teardown finds it even when this fails halfway.
 */
async function attach(uri: string, mountDir: string, attachments: Attached[]): Promise<Attached> {
  await Deno.mkdir(mountDir, { recursive: true });
  const fuse = new Deno.Command(await requireClient("nbdfuse"), {
    args: [mountDir, uri],
    env: { PATH: toolPath(), LC_ALL: "C" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const attached: Attached = { mountDir, fuse, fuseOutput: fuse.output(), loop: null };
  attachments.push(attached);
  let exited = false;
  attached.fuseOutput.finally(() => exited = true).catch(() => {});
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      if ((await Deno.stat(join(mountDir, "nbd"))).isFile) break;
    } catch {
      // Not yet.
    }
    if (exited) {
      const output = await attached.fuseOutput;
      throw new Error(
        `nbdfuse ${mountDir} ${uri} exited ${output.code}: ${
          new TextDecoder().decode(output.stderr)
        }`,
      );
    }
    if (Date.now() > deadline) throw new Error(`${mountDir}/nbd did not appear within 15 s`);
    await sleep(50);
  }
  const { stdout } = await runClientOk("losetup", [
    "-f",
    "--show",
    "--direct-io=on",
    join(mountDir, "nbd"),
  ]);
  attached.loop = stdout.trim();
  assert.match(attached.loop, /^\/dev\/loop\d+$/);
  return attached;
}

/** Detaches the loop device, unmounts nbdfuse and waits for it to exit. Idempotent. */
async function detach(attached: Attached): Promise<void> {
  const errors: unknown[] = [];
  const loop = attached.loop;
  if (loop !== null && await isLoopBound(loop)) {
    const result = await runClient("losetup", ["-d", loop]);
    if (result.code !== 0) errors.push(new Error(`losetup -d ${loop}: ${result.stderr}`));
  }
  // The loop device lets go of the file asynchronously: unmount() retries a busy mount.
  await unmount(attached.mountDir).catch((error) => errors.push(error));
  const timer = setTimeout(() => {
    try {
      attached.fuse.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, 10_000);
  try {
    await attached.fuseOutput;
  } finally {
    clearTimeout(timer);
  }
  if (errors.length > 0) throw new AggregateError(errors, `cannot detach ${attached.mountDir}`);
}

/** The files written to the filesystem; `big.bin` is random. */
function smallFiles(): Record<string, Uint8Array> {
  const encoder = new TextEncoder();
  const odd = new Uint8Array(5000);
  crypto.getRandomValues(odd);
  return {
    "hello.txt": encoder.encode("hello from torus\n"),
    "dir/nested/deep.txt": encoder.encode("nested ".repeat(1000)),
    "odd.bin": odd,
    "empty": new Uint8Array(0),
  };
}

Deno.test("kernel block device: ext4 on nbdfuse + loop over torusd survives a restart", async () => {
  if (Deno.uid() !== 0) {
    throw new Error(
      "nbd_kernel_test needs root (losetup, mount and FUSE mounts); run it as root, as CI does",
    );
  }
  for (const tool of ["nbdfuse", "losetup", "mkfs.ext4", "e2fsck", "mount", "umount", "sync"]) {
    await requireClient(tool);
  }
  for (const device of ["/dev/fuse", "/dev/loop-control"]) {
    try {
      await Deno.stat(device);
    } catch {
      throw new Error(`${device} is missing: this test needs FUSE and loop devices`);
    }
  }

  const dir = await Deno.makeTempDir({ prefix: "torus-nbd-kernel-" });
  const dataDir = join(dir, "data");
  const fuseDir = join(dir, "fuse");
  const fsDir = join(dir, "fs");
  await Deno.mkdir(fsDir);
  const attachments: Attached[] = [];
  let daemon: TorusdProcess | null = null;
  let failed = false;
  let teardownErrors: unknown[] = [];
  try {
    daemon = await startTorusd(dataDir, ["--auto-init"]);
    await createVolume(dataDir, "vol", "128MiB");

    // First life: make a filesystem and write files.
    let attached = await attach(daemon.uri("vol"), fuseDir, attachments);
    await runClientOk("mkfs.ext4", ["-q", attached.loop!], { timeoutMs: 60_000 });
    await runClientOk("mount", [attached.loop!, fsDir]);
    const big = new Uint8Array(32 * MiB);
    for (let at = 0; at < big.length; at += 65536) {
      crypto.getRandomValues(big.subarray(at, at + 65536));
    }
    const bigHash = await sha256(big);
    await Deno.writeFile(join(fsDir, "big.bin"), big);
    const small = smallFiles();
    for (const [name, data] of Object.entries(small)) {
      await Deno.mkdir(join(fsDir, name, ".."), { recursive: true });
      await Deno.writeFile(join(fsDir, name), data);
    }
    await runClientOk("sync", []);
    await unmount(fsDir);
    await detach(attached);

    // torusd restarts; the volume was closed (synced) when nbdfuse went away.
    await stopTorusdCleanly(daemon);
    daemon = await startTorusd(dataDir);

    // Second life: the filesystem is clean and every file is intact.
    attached = await attach(daemon.uri("vol"), fuseDir, attachments);
    const fsck = await runClient("e2fsck", ["-f", "-n", attached.loop!], { timeoutMs: 60_000 });
    assert.equal(fsck.code, 0, `e2fsck -fn found problems:\n${fsck.stdout}${fsck.stderr}`);
    await runClientOk("mount", [attached.loop!, fsDir]);
    const bigAgain = await Deno.readFile(join(fsDir, "big.bin"));
    assert.equal(bigAgain.length, big.length);
    assert.equal(await sha256(bigAgain), bigHash, "big.bin's sha256 after restart");
    for (const [name, data] of Object.entries(small)) {
      assert.deepEqual(await Deno.readFile(join(fsDir, name)), data, name);
    }
    await unmount(fsDir);
    await detach(attached);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    // Teardown in reverse order, each step on its own: a failure never
    // leaves a mount, a loop device or a FUSE mount behind.
    const errors: unknown[] = [];
    await unmount(fsDir).catch((error) => errors.push(error));
    for (const attached of attachments.reverse()) {
      await detach(attached).catch((error) => errors.push(error));
    }
    if (daemon !== null) {
      const status = await stopTorusd(daemon).catch((error) => {
        errors.push(error);
        return null;
      });
      if (status !== null && status.code !== 0) {
        errors.push(new Error(`torusd exited ${status.code}:\n${daemon.log.join("\n")}`));
      }
    }
    if (!(await isMounted(fsDir)) && !(await isMounted(fuseDir))) {
      await Deno.remove(dir, { recursive: true }).catch((error) => errors.push(error));
    }
    if (failed && errors.length > 0) console.error("teardown also failed:", errors);
    teardownErrors = errors;
  }
  if (teardownErrors.length > 0) throw new AggregateError(teardownErrors, "teardown failed");
});
