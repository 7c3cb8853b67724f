/**
 * The ring watch of {@linkcode EtcdMetadata}: one etcd watch on the ring key
 * per instance, however many callers subscribe, started with the first
 * subscriber and cancelled with the last.
 *
 * What a subscriber hears: every ring newer than the newest one this
 * instance had observed when it subscribed (through `initialize`, `getRing`,
 * `setRing` or the watch), in version order, each once. The etcd watch
 * starts right after the revision at which that ring was observed, so rings
 * stored while the watch connects (or fails over, or backs off) are replayed
 * by etcd, never lost. An instance that observed no ring yet takes the first
 * ring it reads after the subscription (its own `getRing`, or the read the
 * watch starts with) as current: a ring another client stores in that
 * window counts as current. To miss nothing after a known ring, call
 * `getRing()` before `watchRing()`.
 *
 * Outages: etcd3 re-creates a broken watch, and the watch resumes right
 * after the last ring offered, so etcd replays every ring stored during an
 * outage, in order. A watch that etcd cancels (for example because its start
 * revision was compacted) is re-created from now after reading the ring, so
 * the newest ring is offered even when older ones left etcd's history.
 * Corrupt rings are logged and skipped, as in the original.
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from "etcd3";
import type { Logger } from "../log.ts";
import { ETCD_WATCH_RECONNECT_DELAY_MS_MAX, NETWORK_CLOCK } from "./_etcd_client.ts";
import { ringVersionOf } from "./_etcd_codec.ts";
import type { RingRecord } from "./metadata_service.ts";

interface Subscriber {
  active: boolean;
  /** Newest ring version offered; null until the watch knows the current ring. */
  lastVersion: number | null;
  callback: (ring: RingRecord) => void;
}

/** One etcd watch on the ring key, and what it has offered so far. */
interface Session {
  stopped: boolean;
  watcher: Watcher | null;
  /** True once the ring the watch starts after is known. */
  baselineKnown: boolean;
  /**
   * True while the watcher may resume right after the last ring offered:
   * false for a watcher started from now until the ring has been read.
   */
  resumable: boolean;
  /** Resolves when the baseline is known or the session stops. */
  baseline: Promise<void>;
  resolveBaseline: () => void;
  /** Every change of the ring key up to this revision has been offered. */
  seenRevision: number;
  waiters: Set<{ revision: number; resolve: () => void }>;
  /** Pending retry of a failed read or of a cancelled watch. */
  retryTimer: number | null;
}

/** A revision as etcd3 returns them (decimal strings), as a number. */
export function revisionOf(text: string | number): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new SyntaxError(`Cannot read etcd revision ${text}: not a safe integer`);
  }
  return value;
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0]!;
}

/** Resolves with `promise`, or with `fallback` after `timeoutMs` of real time. */
export async function within<T, F>(
  promise: Promise<T>,
  timeoutMs: number,
  fallback: F,
): Promise<T | F> {
  let timer = 0;
  const timeout = new Promise<F>((resolve) => {
    timer = NETWORK_CLOCK.setTimer(timeoutMs, () => resolve(fallback));
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    NETWORK_CLOCK.clearTimer(timer);
  }
}

/** A ring version and the etcd revision at which it was the stored ring. */
interface Observation {
  version: number;
  revision: number;
}

/** Options of {@linkcode RingWatch}. */
export interface RingWatchOptions {
  client: Etcd3;
  /** The ring key. */
  key: Buffer;
  logger: Logger;
  /** Where etcd is, for log lines. */
  where: string;
}

/** The subscribers of one instance and the etcd watch that feeds them. */
export class RingWatch {
  #client: Etcd3;
  #key: Buffer;
  #logger: Logger;
  #where: string;
  #subscribers = new Set<Subscriber>();
  #session: Session | null = null;
  #observed: Observation | null = null;
  #closed = false;

  constructor(options: RingWatchOptions) {
    this.#client = options.client;
    this.#key = options.key;
    this.#logger = options.logger;
    this.#where = options.where;
  }

  /**
   * Records that ring `version` was the stored ring at etcd `revision` (a
   * response's header revision): the starting point of later subscribers.
   * A read (not a write of this instance, which is news to its watchers) is
   * also the starting point of a watch still looking for one.
   */
  observe(version: number, revision: number, source: "read" | "write"): void {
    const observed = this.#observed;
    if (
      observed === null || version > observed.version ||
      (version === observed.version && revision > observed.revision)
    ) {
      this.#observed = { version, revision };
    }
    const session = this.#session;
    if (source === "read" && session !== null) this.#establish(session, { version, revision });
  }

  /** Calls `callback` with each newer ring; returns the function that stops it. */
  subscribe(callback: (ring: RingRecord) => void): () => void {
    const subscriber: Subscriber = {
      active: true,
      lastVersion: this.#observed?.version ?? null,
      callback,
    };
    this.#subscribers.add(subscriber);
    if (this.#session === null) this.#session = this.#start();
    return () => {
      subscriber.active = false;
      this.#subscribers.delete(subscriber);
      if (this.#subscribers.size === 0 && this.#session !== null) {
        void this.#stop(this.#session);
      }
    };
  }

  /**
   * Resolves true once every subscriber has been offered the ring stored at
   * `revision` (the ring key's current modification revision), false after
   * `timeoutMs` of real time. True at once without subscribers.
   */
  async caughtUp(revision: () => Promise<number>, timeoutMs: number): Promise<boolean> {
    const session = this.#session;
    if (session === null) return true;
    if (!await within(session.baseline.then(() => true), timeoutMs, false)) return false;
    const target = await revision();
    if (session.stopped || session.seenRevision >= target) return true;
    const offered = new Promise<true>((resolve) => {
      session.waiters.add({ revision: target, resolve: () => resolve(true) });
    });
    return await within(offered, timeoutMs, false);
  }

  /** Stops every subscriber and cancels the etcd watch (waiting at most `timeoutMs`). */
  async close(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const subscriber of this.#subscribers) subscriber.active = false;
    this.#subscribers.clear();
    if (this.#session !== null) await within(this.#stop(this.#session), timeoutMs, undefined);
  }

  #start(): Session {
    let resolveBaseline = () => {};
    const baseline = new Promise<void>((resolve) => resolveBaseline = resolve);
    const session: Session = {
      stopped: false,
      watcher: null,
      baseline,
      resolveBaseline,
      seenRevision: 0,
      waiters: new Set(),
      retryTimer: null,
      baselineKnown: false,
      resumable: false,
    };
    const observed = this.#observed;
    if (observed === null) {
      void this.#readBaseline(session);
    } else {
      this.#establish(session, observed);
    }
    return session;
  }

  /**
   * Starts `session`'s etcd watch right after `baseline`, the ring its
   * subscribers without a starting point take as current. Once per session.
   */
  #establish(session: Session, baseline: Observation): void {
    if (session.stopped || session.baselineKnown) return;
    session.baselineKnown = true;
    for (const subscriber of this.#subscribers) subscriber.lastVersion ??= baseline.version;
    session.seenRevision = baseline.revision;
    session.resolveBaseline();
    this.#attach(session, baseline.revision + 1);
  }

  /** Reads the ring (retrying while etcd is away) to start the watch after it. */
  async #readBaseline(session: Session): Promise<void> {
    try {
      const response = await this.#client.kv.range({ key: this.#key });
      if (session.stopped || session.baselineKnown) return;
      const kv = response.kvs[0];
      const version = kv === undefined ? 0 : this.#versionOf(new Uint8Array(kv.value));
      this.observe(version ?? 0, revisionOf(response.header.revision), "read");
    } catch (error) {
      if (session.stopped || session.baselineKnown) return;
      this.#logger.log("warn", `cannot read the ring from ${this.#where}: ${firstLine(error)}`);
      this.#retryLater(session, () => {
        if (!session.baselineKnown) void this.#readBaseline(session);
      });
    }
  }

  /** The version of stored ring bytes, or null (logged) when they are not a ring. */
  #versionOf(value: Uint8Array): number | null {
    try {
      return ringVersionOf(value);
    } catch (error) {
      // As the original: a corrupt ring is reported and the current one kept.
      this.#logger.log("error", `ignoring an unreadable ring: ${firstLine(error)}`);
      return null;
    }
  }

  /**
   * Creates the etcd watcher of `session`, from `startRevision` (or from now
   * when null), and wires its events.
   *
   * Resuming: etcd3 re-creates a broken watch from the header revision of
   * the last response plus one, but while etcd replays history that header
   * is ahead of the events replayed so far, so a second break would skip
   * rings. After etcd3 updates it ('connected' and 'data' run etcd3's
   * listener first), the watch's start is set back to the revision after the
   * last ring offered: a reconnection replays exactly what was not offered.
   * A watch started from now (after etcd cancelled one, for example because
   * its revision was compacted) first reads the ring, so the newest is
   * offered even when the ones in between are gone from etcd's history.
   */
  #attach(session: Session, startRevision: number | null): void {
    const builder = this.#client.watch().key(this.#key);
    if (startRevision !== null) builder.startRevision(String(startRevision));
    const watcher = builder.watcher();
    session.watcher = watcher;
    session.resumable = startRevision !== null;
    watcher.on("put", (kv: IKeyValue) => {
      this.#offer(session, new Uint8Array(kv.value), revisionOf(kv.mod_revision));
    });
    watcher.on("data", () => this.#resumeAfterOffered(session));
    watcher.on("connected", (response: IWatchResponse) => {
      const revision = revisionOf(response.header.revision);
      if (!session.resumable) return void this.#resync(session, revision);
      if (revision >= session.seenRevision) return this.#resumeAfterOffered(session);
      // etcd's history went back (restored from a backup, or replaced): a
      // watch resuming from our revision would wait for the future.
      this.#logger.log(
        "warn",
        `etcd's revision went back to ${revision}; restarting the ring watch`,
      );
      session.watcher = null;
      session.seenRevision = revision;
      void watcher.cancel().catch(() => {});
      this.#attach(session, null);
    });
    watcher.on("disconnected", (error: unknown) => {
      if (session.stopped) return;
      this.#logger.log("warn", `ring watch lost ${this.#where}: ${firstLine(error)}; reconnecting`);
    });
    watcher.on("error", (error: unknown) => {
      if (session.stopped || session.watcher !== watcher) return;
      this.#logger.log("warn", `ring watch cancelled by etcd: ${firstLine(error)}; restarting`);
      session.watcher = null;
      this.#retryLater(session, () => this.#attach(session, null));
    });
  }

  /** Makes a reconnection of the watcher replay from just after the last ring offered. */
  #resumeAfterOffered(session: Session): void {
    if (session.resumable && session.watcher !== null) {
      session.watcher.request.start_revision = String(session.seenRevision + 1);
    }
  }

  #retryLater(session: Session, action: () => void): void {
    if (session.stopped || session.retryTimer !== null) return;
    session.retryTimer = NETWORK_CLOCK.setTimer(ETCD_WATCH_RECONNECT_DELAY_MS_MAX, () => {
      session.retryTimer = null;
      if (!session.stopped) action();
    });
  }

  /**
   * Reads the ring at `revision` (the current one when compacted), offers
   * it, and makes the watcher resumable; retries later when the read fails.
   */
  async #resync(session: Session, revision: number): Promise<void> {
    const key = this.#key;
    try {
      let response;
      try {
        response = await this.#client.kv.range({ key, revision: String(revision) });
      } catch (error) {
        if (!firstLine(error).includes("compacted")) throw error;
        response = await this.#client.kv.range({ key });
      }
      const kv = response.kvs[0];
      const value = kv === undefined ? null : new Uint8Array(kv.value);
      this.#offer(session, value, Math.max(revision, revisionOf(kv?.mod_revision ?? 0)));
      session.resumable = true;
      this.#resumeAfterOffered(session);
    } catch (error) {
      if (session.stopped) return;
      this.#logger.log("warn", `cannot read the ring from ${this.#where}: ${firstLine(error)}`);
      this.#retryLater(session, () => void this.#resync(session, revision));
    }
  }

  /**
   * Offers a stored ring (null: none) seen at `revision`: rings newer than a
   * subscriber's last are delivered, each in its own microtask.
   */
  #offer(session: Session, value: Uint8Array | null, revision: number): void {
    if (session.stopped) return;
    const version = value === null ? null : this.#versionOf(value);
    if (value !== null && version !== null) {
      this.observe(version, revision, "read");
      for (const subscriber of this.#subscribers) {
        if (version <= (subscriber.lastVersion ?? Infinity)) continue;
        subscriber.lastVersion = version;
        const ring: RingRecord = { version, bytes: value.slice() };
        queueMicrotask(() => {
          if (subscriber.active) subscriber.callback(ring);
        });
      }
    }
    session.seenRevision = Math.max(session.seenRevision, revision);
    for (const waiter of session.waiters) {
      if (waiter.revision <= session.seenRevision) {
        session.waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  #stop(session: Session): Promise<void> {
    session.stopped = true;
    if (this.#session === session) this.#session = null;
    if (session.retryTimer !== null) NETWORK_CLOCK.clearTimer(session.retryTimer);
    session.resolveBaseline();
    for (const waiter of session.waiters) waiter.resolve();
    session.waiters.clear();
    const watcher = session.watcher;
    session.watcher = null;
    if (watcher === null) return Promise.resolve();
    return watcher.cancel().catch((error: unknown) => {
      this.#logger.log("debug", `ring watch cancellation: ${firstLine(error)}`);
    });
  }
}
