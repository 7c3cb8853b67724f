/**
 * A quick throughput check of the NBD server (not a test): fio's `nbd`
 * engine at queue depth 32 — 4 KiB random read and write, 1 MiB sequential
 * read and write — against the server over a 1 GiB memory export in its own
 * process, and against `nbdkit memory 1G` for comparison.
 *
 * Usage: `deno run -A tests/nbd/throughput.ts [--runtime seconds]`
 *
 * @module
 */
import { requireTool, runToolOk } from "./_tools.ts";

const GiB = 1024 * 1024 * 1024;
/** Size of the measured export. */
const EXPORT_BYTES = GiB;
/** Seconds each fio job runs (overridden by `--runtime`). */
const RUNTIME_SECONDS_DEFAULT = 10;
/** Queue depth of every job. */
const IODEPTH = 32;

const JOBS = [
  { name: "4k randread", rw: "randread", bs: "4k" },
  { name: "4k randwrite", rw: "randwrite", bs: "4k" },
  { name: "1M read", rw: "read", bs: "1M" },
  { name: "1M write", rw: "write", bs: "1M" },
] as const;

interface Result {
  iops: number;
  mibPerSecond: number;
  latencyP99Us: number;
}

async function fio(uri: string, rw: string, bs: string, runtime: number | null): Promise<Result> {
  const args = [
    `--name=${rw}-${bs}`,
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--rw=${rw}`,
    `--bs=${bs}`,
    `--iodepth=${IODEPTH}`,
    `--size=${EXPORT_BYTES}`,
    "--output-format=json",
  ];
  if (runtime !== null) args.push("--time_based", `--runtime=${runtime}`);
  const { stdout } = await runToolOk("fio", args, { timeoutMs: 600_000 });
  const job = JSON.parse(stdout.slice(stdout.indexOf("{"))).jobs[0];
  const side = rw.includes("read") ? job.read : job.write;
  return {
    iops: side.iops,
    mibPerSecond: side.bw_bytes / (1024 * 1024),
    latencyP99Us: (side.clat_ns?.percentile?.["99.000000"] ?? 0) / 1000,
  };
}

async function measure(label: string, uri: string, runtime: number): Promise<Map<string, Result>> {
  // Fill the export first so reads do not measure holes.
  await fio(uri, "write", "1M", null);
  const results = new Map<string, Result>();
  for (const job of JOBS) {
    const result = await fio(uri, job.rw, job.bs, runtime);
    results.set(job.name, result);
    console.error(
      `${label.padEnd(12)} ${job.name.padEnd(13)} ${result.iops.toFixed(0).padStart(8)} IOPS ` +
        `${result.mibPerSecond.toFixed(1).padStart(8)} MiB/s  p99 ${
          result.latencyP99Us.toFixed(0)
        } µs`,
    );
  }
  return results;
}

async function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`nothing listens on ${port}`);
}

async function main(): Promise<void> {
  const runtimeIndex = Deno.args.indexOf("--runtime");
  const runtime = runtimeIndex >= 0 ? Number(Deno.args[runtimeIndex + 1]) : RUNTIME_SECONDS_DEFAULT;
  await requireTool("fio");
  const nbdkit = await requireTool("nbdkit");

  // Torus's server, in its own process like a real deployment.
  const serve = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./_serve.ts", import.meta.url).pathname,
      "--export",
      `mem:${EXPORT_BYTES}`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = serve.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = await lines.read();
  const port = JSON.parse(first.value!.split("\n")[0]!).port;
  let torus: Map<string, Result>;
  const stdin = serve.stdin.getWriter();
  try {
    torus = await measure("torus", `nbd://127.0.0.1:${port}/mem`, runtime);
    await stdin.write(new TextEncoder().encode("stats\n"));
    const stats = await lines.read();
    console.error(`torus server after the run: ${stats.value?.trim()}`);
  } finally {
    await stdin.write(new TextEncoder().encode("close\n")).catch(() => {});
    await stdin.close().catch(() => {});
    await serve.status;
    await lines.cancel();
  }

  // nbdkit's memory plugin, for comparison.
  const kitPort = await freePort();
  const kit = new Deno.Command(nbdkit, {
    args: ["-f", "-i", "127.0.0.1", "-p", String(kitPort), "memory", `${EXPORT_BYTES}`],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  let reference: Map<string, Result>;
  try {
    await waitForPort(kitPort);
    reference = await measure("nbdkit", `nbd://127.0.0.1:${kitPort}/`, runtime);
  } finally {
    kit.kill("SIGTERM");
    await kit.status;
  }

  console.log(
    `| job (QD${IODEPTH}, ${runtime} s) | torus IOPS | torus MiB/s | nbdkit IOPS | nbdkit MiB/s | ratio |`,
  );
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const job of JOBS) {
    const a = torus.get(job.name)!;
    const b = reference.get(job.name)!;
    console.log(
      `| ${job.name} | ${a.iops.toFixed(0)} | ${a.mibPerSecond.toFixed(1)} | ${
        b.iops.toFixed(0)
      } | ` +
        `${b.mibPerSecond.toFixed(1)} | ${(a.iops / b.iops).toFixed(2)} |`,
    );
  }
}

if (import.meta.main) await main();
