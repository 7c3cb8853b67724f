/**
 * What an NBD server has served since it started, for `/metrics`: requests,
 * failures, bytes and latency per command, and connections accepted and
 * refused. Every request is counted; the latency (from a request's dispatch
 * to its reply being written to the socket) of one request in
 * {@linkcode NBD_LATENCY_SAMPLE_EVERY} of each command is measured, since
 * reading the clock is what counting would otherwise cost.
 *
 * @module
 */
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
} from "./protocol.ts";

/**
 * Of each command's requests, one in this many has its latency measured
 * (the first, then every this-many-th): a clock read costs about 0.2 µs in
 * Deno (`performance.now`, measured on the reference machine), and two per
 * request were 3 % of the CPU a 4 KiB read takes. Sampled latencies give
 * the same averages and quantiles; the request, error and byte counts stay
 * exact.
 */
export const NBD_LATENCY_SAMPLE_EVERY = 8;

/** The commands counted, by their metric label. */
export const NBD_COUNTED_COMMANDS = [
  "read",
  "write",
  "flush",
  "trim",
  "write_zeroes",
  "block_status",
] as const;

/** A label of {@linkcode NBD_COUNTED_COMMANDS}. */
export type NbdCountedCommand = (typeof NBD_COUNTED_COMMANDS)[number];

/**
 * Upper bounds of the latency histogram's buckets, in seconds: from 50 µs
 * (a cached 4 KiB read) doubling to about 3.3 s (a write waiting for a
 * collection), as the original's block histograms (50 µs · 2^k). A request
 * slower than the last bound counts only in the `+Inf` bucket.
 */
export const NBD_LATENCY_BUCKETS_SECONDS: readonly number[] = Array.from(
  { length: 17 },
  (_, k) => 50e-6 * 2 ** k,
);

/** The label of each command type, indexed by type; undefined for commands not counted. */
const LABEL_BY_TYPE: (NbdCountedCommand | undefined)[] = [];
LABEL_BY_TYPE[NBD_CMD_READ] = "read";
LABEL_BY_TYPE[NBD_CMD_WRITE] = "write";
LABEL_BY_TYPE[NBD_CMD_FLUSH] = "flush";
LABEL_BY_TYPE[NBD_CMD_TRIM] = "trim";
LABEL_BY_TYPE[NBD_CMD_WRITE_ZEROES] = "write_zeroes";
LABEL_BY_TYPE[NBD_CMD_BLOCK_STATUS] = "block_status";

/** The counts of one command. */
export interface NbdCommandCounts {
  /** Requests answered (successfully or not). */
  requests: number;
  /** Requests answered with an error. */
  errors: number;
  /** Bytes the successful requests covered (their lengths; 0 for flush). */
  bytes: number;
  /** Requests whose latency was measured (one in {@linkcode NBD_LATENCY_SAMPLE_EVERY}). */
  timed: number;
  /** Sum of the measured latencies, in seconds. */
  seconds: number;
  /**
   * Requests per latency bucket, not cumulative: `buckets[k]` counts those
   * above bucket `k - 1`'s bound and within bucket `k`'s; the last entry
   * counts those above every bound.
   */
  buckets: number[];
}

/** A copy of {@linkcode NbdCounters}' counts. */
export interface NbdCountersSnapshot {
  /** Counts per command. */
  commands: Record<NbdCountedCommand, NbdCommandCounts>;
  /** Connections accepted. */
  connectionsAccepted: number;
  /** Connections closed on arrival: the server was at its connection limit or closing. */
  connectionsRefused: number;
}

function emptyCounts(): NbdCommandCounts {
  return {
    requests: 0,
    errors: 0,
    bytes: 0,
    timed: 0,
    seconds: 0,
    buckets: new Array(NBD_LATENCY_BUCKETS_SECONDS.length + 1).fill(0),
  };
}

/** What {@linkcode NbdCounters.start} returns for a request whose latency is not measured. */
export const NOT_TIMED = -1;

/**
 * The counters of one NBD server.
 *
 * @example Usage
 * ```ts
 * import { NbdCounters } from "./counters.ts";
 * import { NBD_CMD_READ } from "./protocol.ts";
 * let nowMs = 0;
 * const counters = new NbdCounters(() => nowMs);
 * const startMs = counters.start(NBD_CMD_READ); // the first read is timed
 * nowMs += 0.2;
 * counters.record(NBD_CMD_READ, 4096, true, startMs);
 * const { requests, seconds } = counters.snapshot().commands.read;
 * if (requests !== 1 || seconds !== 0.0002) throw new Error("miscounted");
 * ```
 */
export class NbdCounters {
  /** The time source of latencies, in milliseconds (any origin). */
  readonly nowMs: () => number;
  #sampleEvery: number;
  /** The counts of each counted command, by its type. */
  #byType: (NbdCommandCounts | undefined)[] = Array.from(
    LABEL_BY_TYPE,
    (label) => label === undefined ? undefined : emptyCounts(),
  );
  /** Requests dispatched, by command type (the counted ones). */
  #dispatched = Array.from(LABEL_BY_TYPE, () => 0);
  #connectionsAccepted = 0;
  #connectionsRefused = 0;

  /**
   * Counts with latencies from `nowMs` (default `performance.now`), measured
   * for one request in `sampleEvery` of each command.
   *
   * @throws {RangeError} when `sampleEvery` is not a positive integer.
   */
  constructor(
    nowMs: () => number = () => performance.now(),
    sampleEvery = NBD_LATENCY_SAMPLE_EVERY,
  ) {
    if (!(Number.isSafeInteger(sampleEvery) && sampleEvery > 0)) {
      throw new RangeError(`sampleEvery must be a positive integer, got ${sampleEvery}`);
    }
    this.nowMs = nowMs;
    this.#sampleEvery = sampleEvery;
  }

  /**
   * Called as a request of command `type` is dispatched: its start time (of
   * {@linkcode NbdCounters.nowMs}) when its latency is to be measured, or
   * {@linkcode NOT_TIMED}. Pass the result to {@linkcode NbdCounters.record}.
   */
  start(type: number): number {
    if (this.#byType[type] === undefined) return NOT_TIMED;
    const dispatched = this.#dispatched[type]!;
    this.#dispatched[type] = dispatched + 1;
    return dispatched % this.#sampleEvery === 0 ? this.nowMs() : NOT_TIMED;
  }

  /**
   * Counts one answered request of command `type` covering `lengthBytes`,
   * with `startMs` from {@linkcode NbdCounters.start}. Commands not counted
   * (DISC, unknown ones) are ignored.
   */
  record(type: number, lengthBytes: number, ok: boolean, startMs: number): void {
    const counts = this.#byType[type];
    if (counts === undefined) return;
    counts.requests++;
    if (ok) counts.bytes += lengthBytes;
    else counts.errors++;
    if (startMs === NOT_TIMED) return;
    const seconds = Math.max(0, this.nowMs() - startMs) / 1000;
    counts.timed++;
    counts.seconds += seconds;
    let bucket = 0;
    while (
      bucket < NBD_LATENCY_BUCKETS_SECONDS.length &&
      seconds > NBD_LATENCY_BUCKETS_SECONDS[bucket]!
    ) bucket++;
    counts.buckets[bucket]!++;
  }

  /** Counts one connection accepted. */
  connectionAccepted(): void {
    this.#connectionsAccepted++;
  }

  /** Counts one connection refused on arrival. */
  connectionRefused(): void {
    this.#connectionsRefused++;
  }

  /** A copy of the counts. */
  snapshot(): NbdCountersSnapshot {
    const commands = {} as Record<NbdCountedCommand, NbdCommandCounts>;
    this.#byType.forEach((counts, type) => {
      if (counts !== undefined) {
        commands[LABEL_BY_TYPE[type]!] = { ...counts, buckets: [...counts.buckets] };
      }
    });
    return {
      commands,
      connectionsAccepted: this.#connectionsAccepted,
      connectionsRefused: this.#connectionsRefused,
    };
  }
}
