/**
 * What an NBD server has served since it started, for `/metrics`: requests,
 * failures, bytes and latency per command, and connections accepted and
 * refused. Counting is a few array increments per request; the latency of a
 * request runs from its dispatch to its reply being written to the socket.
 *
 * @module
 */
import {
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
} from "./protocol.ts";

/** The commands counted, by their metric label. */
export const NBD_COUNTED_COMMANDS = ["read", "write", "flush", "trim", "write_zeroes"] as const;

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

/** The counts of one command. */
export interface NbdCommandCounts {
  /** Requests answered (successfully or not). */
  requests: number;
  /** Requests answered with an error. */
  errors: number;
  /** Bytes the successful requests covered (their lengths; 0 for flush). */
  bytes: number;
  /** Sum of the requests' latencies, in seconds. */
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
    seconds: 0,
    buckets: new Array(NBD_LATENCY_BUCKETS_SECONDS.length + 1).fill(0),
  };
}

/**
 * The counters of one NBD server.
 *
 * @example Usage
 * ```ts
 * import { NbdCounters } from "./counters.ts";
 * import { NBD_CMD_READ } from "./protocol.ts";
 * let nowMs = 0;
 * const counters = new NbdCounters(() => nowMs);
 * const startMs = counters.nowMs();
 * nowMs += 0.2;
 * counters.record(NBD_CMD_READ, 4096, true, startMs);
 * console.log(counters.snapshot().commands.read.requests); // 1
 * ```
 */
export class NbdCounters {
  /** The time source of latencies, in milliseconds (any origin). */
  readonly nowMs: () => number;
  #commands = new Map<NbdCountedCommand, NbdCommandCounts>(
    NBD_COUNTED_COMMANDS.map((command) => [command, emptyCounts()]),
  );
  #connectionsAccepted = 0;
  #connectionsRefused = 0;

  /** Counts with latencies from `nowMs` (default `performance.now`). */
  constructor(nowMs: () => number = () => performance.now()) {
    this.nowMs = nowMs;
  }

  /**
   * Counts one answered request of command `type` covering `lengthBytes`,
   * dispatched at `startMs` (of {@linkcode NbdCounters.nowMs}). Commands
   * not counted (DISC, unknown ones) are ignored.
   */
  record(type: number, lengthBytes: number, ok: boolean, startMs: number): void {
    const label = LABEL_BY_TYPE[type];
    if (label === undefined) return;
    const counts = this.#commands.get(label)!;
    const seconds = Math.max(0, this.nowMs() - startMs) / 1000;
    counts.requests++;
    if (ok) counts.bytes += lengthBytes;
    else counts.errors++;
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
    for (const [command, counts] of this.#commands) {
      commands[command] = { ...counts, buckets: [...counts.buckets] };
    }
    return {
      commands,
      connectionsAccepted: this.#connectionsAccepted,
      connectionsRefused: this.#connectionsRefused,
    };
  }
}
