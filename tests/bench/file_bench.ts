/**
 * In-process cost of the engine under the NBD server: a {@linkcode File} on
 * the `file` block store and the embedded metadata, driven at a fixed queue
 * depth with no network in between. Separates what the engine costs from
 * what the NBD front end costs (`deno task bench` measures both together).
 *
 * ```
 * deno run -A tests/bench/file_bench.ts [--size=1GiB] [--seconds=3] [--qd=32] [--dir=PATH] [--only=TEXT]
 * ```
 *
 * The volume is first filled once, whole (1 MiB writes, then a sync), so
 * that reads and copies on write find data; then each job runs for
 * `--seconds`. `--only` runs the jobs whose name contains TEXT (the fill
 * always runs).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { openBlockFile } from "../../lib/block/block_volume.ts";
import type { File } from "../../lib/file/file.ts";
import { LocalNode } from "../../lib/node/local_node.ts";
import { Prng } from "../../lib/prng.ts";
import { formatSize, parseSize } from "../../lib/size.ts";

const SMALL_IO_BYTES = 4096;
const LARGE_IO_BYTES = 1024 * 1024;

interface Job {
  name: string;
  ioBytes: number;
  write: boolean;
  random: boolean;
  /** Sync before the job, so writes start a fresh session (copy-on-write). */
  freshSession: boolean;
}

const JOBS: Job[] = [
  {
    name: "seq read 1M",
    ioBytes: LARGE_IO_BYTES,
    write: false,
    random: false,
    freshSession: false,
  },
  {
    name: "rand read 4k",
    ioBytes: SMALL_IO_BYTES,
    write: false,
    random: true,
    freshSession: false,
  },
  {
    name: "rand write 4k, new session",
    ioBytes: SMALL_IO_BYTES,
    write: true,
    random: true,
    freshSession: true,
  },
  {
    name: "rand write 4k, same session",
    ioBytes: SMALL_IO_BYTES,
    write: true,
    random: true,
    freshSession: false,
  },
  {
    name: "seq write 1M, new session",
    ioBytes: LARGE_IO_BYTES,
    write: true,
    random: false,
    freshSession: true,
  },
];

/** Writes the whole file once, 1 MiB at a time at queue depth `qd`, then syncs; prints the rate. */
async function fill(file: File, qd: number): Promise<void> {
  const data = new Uint8Array(LARGE_IO_BYTES);
  crypto.getRandomValues(data.subarray(0, 65536));
  const chunks = Math.ceil(file.sizeBytes / LARGE_IO_BYTES);
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    for (let chunk = next++; chunk < chunks; chunk = next++) {
      const offset = chunk * LARGE_IO_BYTES;
      const length = Math.min(LARGE_IO_BYTES, file.sizeBytes - offset);
      await file.writeAt(data.subarray(0, length), offset);
    }
  };
  await Promise.all(Array.from({ length: qd }, worker));
  await file.sync();
  const elapsed = (performance.now() - started) / 1000;
  console.log(
    `${"fill (seq write 1M, once)".padEnd(30)} ${
      (file.sizeBytes / elapsed / 2 ** 20).toFixed(0).padStart(22)
    } MiB/s`,
  );
}

async function runJob(file: File, job: Job, qd: number, seconds: number, prng: Prng) {
  if (job.freshSession) await file.sync();
  const data = new Uint8Array(job.ioBytes);
  crypto.getRandomValues(data.subarray(0, Math.min(65536, data.length)));
  const slots = Math.floor(file.sizeBytes / job.ioBytes);
  let next = 0;
  let ops = 0;
  const deadline = performance.now() + seconds * 1000;
  const latencies: number[] = [];
  const worker = async () => {
    // Each worker reuses its read buffer, as the NBD server's pool does.
    const into = new Uint8Array(job.ioBytes);
    while (performance.now() < deadline) {
      const slot = job.random ? prng.nextInt(slots) : next++ % slots;
      const start = performance.now();
      if (job.write) await file.writeAt(data, slot * job.ioBytes);
      else await file.readAt(slot * job.ioBytes, job.ioBytes, into);
      latencies.push(performance.now() - start);
      ops++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: qd }, worker));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const mean = latencies.reduce((a, b) => a + b, 0) / latencies.length;
  const p99 = latencies[Math.floor(latencies.length * 0.99)] ?? 0;
  const perOpUs = elapsed * 1e6 / ops;
  console.log(
    `${job.name.padEnd(30)} ${(ops / elapsed).toFixed(0).padStart(8)} op/s ${
      (ops * job.ioBytes / elapsed / 2 ** 20).toFixed(0).padStart(6)
    } MiB/s  ${perOpUs.toFixed(1).padStart(7)} µs/op  mean ${(mean * 1000).toFixed(0)} µs  p99 ${
      (p99 * 1000).toFixed(0)
    } µs`,
  );
}

async function main() {
  const { values } = parseArgs({
    options: {
      size: { type: "string", default: "1GiB" },
      seconds: { type: "string", default: "3" },
      qd: { type: "string", default: "32" },
      dir: { type: "string" },
      only: { type: "string" },
    },
  });
  const sizeBytes = parseSize(values.size!);
  const dir = values.dir ?? await Deno.makeTempDir({ prefix: "torus-file-bench-" });
  const node = await LocalNode.open({ dataDir: dir, create: true });
  try {
    await node.initialize({ blockSizeBytes: 512 * 1024, defaultBlockSpec: "crc,base" });
    const context = await node.volumes({ bytes: sizeBytes * 4 });
    await context.metadata.createVolume("bench", sizeBytes);
    const lease = await node.lease();
    const file = await openBlockFile(context, "bench", { lease: lease.lease });
    console.log(`volume ${formatSize(sizeBytes)}, QD ${values.qd}, ${values.seconds} s per job`);
    const prng = new Prng(1);
    await fill(file, Number(values.qd));
    for (const job of JOBS) {
      if (values.only && !job.name.includes(values.only)) continue;
      await runJob(file, job, Number(values.qd), Number(values.seconds), prng);
    }
    await file.close();
  } finally {
    await node.close();
    if (!values.dir) await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
