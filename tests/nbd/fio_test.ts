/**
 * fio's `nbd` engine against the server: queue depth 32, every block written
 * then read back and checked with crc32c.
 */
import assert from "node:assert/strict";
import { runToolOk, startServer } from "./_tools.ts";

const MiB = 1024 * 1024;
/** Bytes each fio job covers: small, to keep the test fast. */
const FIO_SIZE_BYTES = 64 * MiB;

interface FioJob {
  error: number;
  read: { io_bytes: number };
  write: { io_bytes: number };
}

async function fioVerify(uri: string, rw: string, blockSize: string): Promise<FioJob> {
  const { stdout } = await runToolOk("fio", [
    `--name=${rw}-${blockSize}`,
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--rw=${rw}`,
    `--bs=${blockSize}`,
    "--iodepth=32",
    `--size=${FIO_SIZE_BYTES}`,
    "--verify=crc32c",
    "--verify_fatal=1",
    "--do_verify=1",
    "--output-format=json",
  ]);
  // The nbd engine prints "fio: connected to NBD server" before the JSON.
  const report = JSON.parse(stdout.slice(stdout.indexOf("{")));
  return report.jobs[0];
}

for (const [rw, blockSize] of [["randwrite", "4k"], ["write", "1M"]] as const) {
  Deno.test(`fio ${rw} bs=${blockSize} iodepth=32 verifies with crc32c`, async () => {
    const server = startServer([{ name: "disk", sizeBytes: FIO_SIZE_BYTES }]);
    try {
      const job = await fioVerify(server.uri("disk"), rw, blockSize);
      assert.equal(job.error, 0);
      assert.equal(job.write.io_bytes, FIO_SIZE_BYTES);
      // The verify phase read every block back.
      assert.equal(job.read.io_bytes, FIO_SIZE_BYTES);
    } finally {
      await server.close();
    }
  });
}
