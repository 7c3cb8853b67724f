/**
 * The worker side of {@linkcode IoThread} (`io_thread.ts`): a thread that
 * runs `pread` and `pwrite` jobs from a ring in shared memory, in order, and
 * posts each result back into the ring. It blocks in `Atomics.wait` while
 * the ring is empty, and exits when the stop flag is set.
 *
 * It touches memory only through the addresses in the jobs, which the main
 * thread keeps alive until the job's result is posted.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import {
  CTL_COMPLETED,
  CTL_SLEEPING,
  CTL_STOP,
  CTL_SUBMITTED,
  EINTR,
  IO_OP_READ,
  JOB_ADDRESS,
  JOB_FD,
  JOB_FIELDS,
  JOB_LENGTH,
  JOB_OFFSET,
  JOB_OP,
  JOB_PIECE,
  type RingLayout,
  ringViews,
} from "./io_ring.ts";

const library = Deno.dlopen("libc.so.6", {
  // Addresses arrive as numbers: `usize` takes them without a pointer object.
  pread: { parameters: ["i32", "usize", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "usize", "usize", "i64"], result: "isize" },
  __errno_location: { parameters: [], result: "pointer" },
});
const libc = library.symbols;

function errno(): number {
  const location = libc.__errno_location();
  return location === null ? 0 : new Deno.UnsafePointerView(location).getInt32();
}

/**
 * Runs one job: all its bytes, or the first failure as `-errno`; a read past
 * the end of the file returns the bytes read so far.
 */
function run(job: Float64Array, at: number): number {
  const read = job[at + JOB_OP] === IO_OP_READ;
  const fd = job[at + JOB_FD]!;
  const address = job[at + JOB_ADDRESS]!;
  const length = job[at + JOB_LENGTH]!;
  const offset = job[at + JOB_OFFSET]!;
  const piece = job[at + JOB_PIECE]!;
  let done = 0;
  while (done < length) {
    const want = Math.min(length - done, piece);
    const n = Number(
      read
        ? libc.pread(fd, BigInt(address + done), BigInt(want), BigInt(offset + done))
        : libc.pwrite(fd, BigInt(address + done), BigInt(want), BigInt(offset + done)),
    );
    if (n < 0) {
      const code = errno();
      if (code === EINTR) continue;
      return -code;
    }
    if (n === 0) return done; // past the end of the file (reads only)
    done += n;
  }
  return done;
}

function serve(layout: RingLayout): void {
  const { ctl, jobs, results } = ringViews(layout);
  const depth = layout.depth;
  let done = Atomics.load(ctl, CTL_COMPLETED);
  for (;;) {
    if (Atomics.load(ctl, CTL_STOP) === 1) return;
    const submitted = Atomics.load(ctl, CTL_SUBMITTED);
    if (submitted === done) {
      // Announce the sleep, then look again: a submit that missed the flag
      // was stored before this load (both sides use sequentially consistent
      // atomics), so no job is left waiting.
      Atomics.store(ctl, CTL_SLEEPING, 1);
      if (Atomics.load(ctl, CTL_SUBMITTED) === done && Atomics.load(ctl, CTL_STOP) === 0) {
        Atomics.wait(ctl, CTL_SUBMITTED, done);
      }
      Atomics.store(ctl, CTL_SLEEPING, 0);
      continue;
    }
    const slot = done & (depth - 1);
    results[slot] = run(jobs, slot * JOB_FIELDS);
    done = (done + 1) | 0;
    Atomics.store(ctl, CTL_COMPLETED, done);
    Atomics.notify(ctl, CTL_COMPLETED);
  }
}

self.onmessage = (event: MessageEvent<RingLayout>) => {
  serve(event.data);
  library.close();
  self.close();
};
