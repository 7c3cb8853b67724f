/**
 * A thread for large `pread`/`pwrite` calls, so that the event loop does not
 * pay their copies. One JavaScript thread serves every NBD client of torusd;
 * under 1 MiB reads and writes it spent about a third of its time in the
 * kernel copying between the page cache and its buffers
 * (`Documentation/benchmarks.md`, session 8). Handing a 512 KiB copy to this
 * thread costs the event loop about 15 µs instead of about 100 µs.
 *
 * Jobs go through a ring in shared memory (`io_ring.ts`) to a worker
 * (`io_worker.ts`) that runs them in order with FFI calls on the same file
 * descriptors: a job names its buffer by address, and the buffer is kept
 * referenced here until the job completes. One thread is shared by every
 * user in the process; it starts at the first job and stops when the last
 * user releases it. Small calls stay synchronous: below
 * {@linkcode IO_THREAD_MIN_BYTES} the hand-off costs more than the copy.
 *
 * @example Usage
 * ```ts ignore
 * const thread = IoThread.acquire();
 * const result = await thread.read(fd, buffer, 0); // bytes read, -errno, or NaN: not run
 * thread.release();
 * ```
 *
 * @module
 */
import { assert } from "../assert.ts";
import { addressOf } from "./address.ts";
import {
  createRing,
  CTL_COMPLETED,
  CTL_SLEEPING,
  CTL_STOP,
  CTL_SUBMITTED,
  IO_OP_READ,
  IO_OP_WRITE,
  JOB_ADDRESS,
  JOB_FD,
  JOB_FIELDS,
  JOB_LENGTH,
  JOB_OFFSET,
  JOB_OP,
  JOB_PIECE,
  type RingLayout,
  type RingViews,
  ringViews,
} from "./io_ring.ts";

/** Jobs in flight at most; a caller finding the ring full does its I/O itself. */
export const IO_THREAD_DEPTH = 64;
/**
 * Smallest copy, in bytes, worth handing to the thread: the hand-off costs
 * the event loop about 10–15 µs whatever the size, a synchronous 64 KiB copy
 * about 15–20 µs, 512 KiB about 100 µs. (The file store hands over reads
 * that miss the page cache whatever their length: the disk costs more.)
 */
export const IO_THREAD_MIN_BYTES = 128 * 1024;

/**
 * The outcome of a job: bytes moved (fewer than asked only for a read past
 * the end of the file), `-errno`, or `NaN` when the thread could not run it
 * (it failed to start or died); the caller then does the I/O itself.
 */
export type IoResult = number;

/** Jobs the I/O thread of this process ran, and the bytes they moved (for `/metrics`). */
export const ioThreadStats = { jobs: 0, bytes: 0 };

interface Pending {
  resolve: (result: IoResult) => void;
  /** Keeps the buffer (and its memory) alive until the worker is done with it. */
  buffer: Uint8Array;
}

/** The shared thread for large positioned reads and writes. */
export class IoThread {
  static #shared: IoThread | null = null;
  #users = 0;
  #layout: RingLayout;
  #views: RingViews;
  #worker: Worker | null = null;
  /** Set when the worker failed: every job from then on is not run. */
  #broken = false;
  #submitted = 0;
  #completed = 0;
  #pending: (Pending | undefined)[] = new Array(IO_THREAD_DEPTH);
  #watching = false;

  private constructor() {
    this.#layout = createRing(IO_THREAD_DEPTH);
    this.#views = ringViews(this.#layout);
  }

  /** The process's thread, with one more user; each call needs a {@linkcode release}. */
  static acquire(): IoThread {
    const thread = IoThread.#shared ??= new IoThread();
    thread.#users++;
    return thread;
  }

  /** Drops a user; the last one stops the worker (no job may be in flight). */
  release(): void {
    assert(this.#users > 0, "IoThread released more often than acquired");
    this.#users--;
    if (this.#users > 0) return;
    assert(this.inFlight === 0, `IoThread released with ${this.inFlight} jobs in flight`);
    this.#stop();
    IoThread.#shared = null;
  }

  /** Jobs submitted and not yet completed. */
  get inFlight(): number {
    return (this.#submitted - this.#completed) | 0;
  }

  /** Whether a job can be submitted now. */
  get hasRoom(): boolean {
    return !this.#broken && this.inFlight < IO_THREAD_DEPTH;
  }

  /** Reads `target.length` bytes at `offsetBytes` of `fd` into `target` (needs {@linkcode hasRoom}). */
  read(fd: number, target: Uint8Array, offsetBytes: number): Promise<IoResult> {
    return this.#submit(IO_OP_READ, fd, target, offsetBytes, target.length);
  }

  /**
   * Writes all of `source` at `offsetBytes` of `fd`, in `pwrite` calls of at
   * most `pieceBytes` (needs {@linkcode hasRoom}).
   */
  write(
    fd: number,
    source: Uint8Array,
    offsetBytes: number,
    pieceBytes: number,
  ): Promise<IoResult> {
    return this.#submit(IO_OP_WRITE, fd, source, offsetBytes, pieceBytes);
  }

  #submit(
    op: number,
    fd: number,
    buffer: Uint8Array,
    offsetBytes: number,
    pieceBytes: number,
  ): Promise<IoResult> {
    assert(this.#users > 0, "IoThread used after its release");
    assert(this.hasRoom, "IoThread submit without room");
    assert(buffer.length > 0 && pieceBytes > 0, "IoThread job of no bytes");
    this.#start();
    const { ctl, jobs } = this.#views;
    const seq = this.#submitted;
    const slot = seq & (IO_THREAD_DEPTH - 1);
    const at = slot * JOB_FIELDS;
    jobs[at + JOB_OP] = op;
    jobs[at + JOB_FD] = fd;
    jobs[at + JOB_ADDRESS] = addressOf(buffer);
    jobs[at + JOB_LENGTH] = buffer.length;
    jobs[at + JOB_OFFSET] = offsetBytes;
    jobs[at + JOB_PIECE] = pieceBytes;
    const result = new Promise<IoResult>((resolve) => {
      this.#pending[slot] = { resolve, buffer };
    });
    this.#submitted = (seq + 1) | 0;
    Atomics.store(ctl, CTL_SUBMITTED, this.#submitted);
    if (Atomics.load(ctl, CTL_SLEEPING) === 1) Atomics.notify(ctl, CTL_SUBMITTED, 1);
    this.#watch();
    return result;
  }

  #start(): void {
    if (this.#worker !== null) return;
    const worker = new Worker(new URL("./io_worker.ts", import.meta.url).href, {
      type: "module",
      name: "torus-io",
    });
    worker.onerror = (event) => {
      event.preventDefault();
      this.#fail();
    };
    worker.postMessage(this.#layout);
    this.#worker = worker;
  }

  /** Waits (without blocking) for the completion of the oldest job in flight. */
  #watch(): void {
    if (this.#watching || this.inFlight === 0 || this.#broken) return;
    this.#watching = true;
    const wait = Atomics.waitAsync(this.#views.ctl, CTL_COMPLETED, this.#completed);
    if (wait.async) {
      wait.value.then(() => this.#drain());
    } else {
      queueMicrotask(() => this.#drain());
    }
  }

  /** Settles every job the worker completed, then watches for the next. */
  #drain(): void {
    this.#watching = false;
    if (this.#broken) return;
    const { ctl, results } = this.#views;
    const completed = Atomics.load(ctl, CTL_COMPLETED);
    while (this.#completed !== completed) {
      const slot = this.#completed & (IO_THREAD_DEPTH - 1);
      const pending = this.#pending[slot];
      assert(pending !== undefined, `IoThread job ${this.#completed} completed twice`);
      this.#pending[slot] = undefined;
      this.#completed = (this.#completed + 1) | 0;
      const result = results[slot]!;
      if (result > 0) {
        ioThreadStats.jobs++;
        ioThreadStats.bytes += result;
      }
      pending.resolve(result);
    }
    this.#watch();
  }

  /** The worker died: its jobs are not run, and no more go to it. */
  #fail(): void {
    this.#broken = true;
    for (let i = 0; i < IO_THREAD_DEPTH; i++) {
      const pending = this.#pending[i];
      this.#pending[i] = undefined;
      pending?.resolve(NaN);
    }
    this.#completed = this.#submitted;
    this.#worker?.terminate();
  }

  #stop(): void {
    const worker = this.#worker;
    this.#worker = null;
    if (worker === null) return;
    const { ctl } = this.#views;
    Atomics.store(ctl, CTL_STOP, 1);
    Atomics.notify(ctl, CTL_SUBMITTED);
    worker.terminate();
  }
}
