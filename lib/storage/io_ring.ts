/**
 * The ring of I/O jobs that {@linkcode IoThread} (`io_thread.ts`) shares
 * with its worker (`io_worker.ts`): a `SharedArrayBuffer` holding four
 * control words, `depth` jobs and `depth` results. The main thread fills a
 * job and advances `CTL_SUBMITTED`; the worker runs jobs in order and
 * advances `CTL_COMPLETED`. Sequence numbers are i32 and wrap; a job's place
 * is its sequence number masked by `depth - 1`.
 *
 * @module
 */
import { assert } from "../assert.ts";

/** Control word: sequence number of the next job to submit. */
export const CTL_SUBMITTED = 0;
/** Control word: sequence number of the next job to complete. */
export const CTL_COMPLETED = 1;
/** Control word: 1 while the worker waits for a job (the submitter must wake it). */
export const CTL_SLEEPING = 2;
/** Control word: 1 when the worker is to exit. */
export const CTL_STOP = 3;
const CTL_WORDS = 4;

/** Job field: {@linkcode IO_OP_READ} or {@linkcode IO_OP_WRITE}. */
export const JOB_OP = 0;
/** Job field: the file descriptor (shared by all threads of the process). */
export const JOB_FD = 1;
/** Job field: the address of the first byte of the buffer. */
export const JOB_ADDRESS = 2;
/** Job field: bytes to move. */
export const JOB_LENGTH = 3;
/** Job field: the file offset of the first byte. */
export const JOB_OFFSET = 4;
/** Job field: largest single `pread`/`pwrite`, in bytes. */
export const JOB_PIECE = 5;
/** Fields (f64) per job. */
export const JOB_FIELDS = 6;

/** Job op: `pread` into the buffer. */
export const IO_OP_READ = 1;
/** Job op: `pwrite` from the buffer. */
export const IO_OP_WRITE = 2;

/** Linux errno of an interrupted call, retried by the worker. */
export const EINTR = 4;

/** What the worker is sent: the shared memory and its depth. */
export interface RingLayout {
  buffer: SharedArrayBuffer;
  /** Jobs the ring holds, a power of two. */
  depth: number;
}

/** Typed views of a ring. */
export interface RingViews {
  ctl: Int32Array;
  /** `JOB_FIELDS` per job. */
  jobs: Float64Array;
  /** Per job: bytes moved, or `-errno`. */
  results: Float64Array;
}

/** Allocates the shared memory of a ring of `depth` jobs. */
export function createRing(depth: number): RingLayout {
  assert(depth > 0 && (depth & (depth - 1)) === 0, `ring depth ${depth} is not a power of two`);
  const bytes = 4 * CTL_WORDS + 8 * depth * (JOB_FIELDS + 1);
  return { buffer: new SharedArrayBuffer(bytes), depth };
}

/** The views of a ring's shared memory. */
export function ringViews(layout: RingLayout): RingViews {
  const { buffer, depth } = layout;
  const jobsAt = 4 * CTL_WORDS;
  const resultsAt = jobsAt + 8 * depth * JOB_FIELDS;
  return {
    ctl: new Int32Array(buffer, 0, CTL_WORDS),
    jobs: new Float64Array(buffer, jobsAt, depth * JOB_FIELDS),
    results: new Float64Array(buffer, resultsAt, depth),
  };
}
