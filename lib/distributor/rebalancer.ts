/**
 * The rebalancer: moves the copies a node holds to the peers the current ring
 * says own them. Every process with a distributor runs it (on a client it
 * empties the write cache of write level `local`).
 *
 * A cycle walks a snapshot of the local store's refs, at most
 * {@linkcode REBALANCE_BLOCKS_PER_TICK} per {@linkcode Rebalancer.tick}. For each ref:
 *
 * - the owners other than this node are asked whether they have it
 *   (`hasBlocks`, in batches of {@linkcode HAS_BLOCKS_BATCH_MAX}); an owner that
 *   lacks it gets a copy of the local block;
 * - when this node is not an owner, the local copy is deleted only when every
 *   owner confirmed a copy with the same digest as the local one (a 1-byte
 *   read returns the whole block's sector CRCs) and then flushed. Any doubt
 *   (an owner unreachable, a check or copy or flush failed, an owner holding
 *   a different version) keeps the local copy: it fails closed, and since
 *   every owner held a matching durable copy, the last copy is never deleted.
 *
 * Refs the garbage collector proved dead (`isDead`) are deleted locally
 * instead of being pushed (otherwise a copy that missed a delete would be
 * resurrected on its owners).
 *
 * Known limit: a copy is pushed with a plain write, so a push that races with
 * a newer write of the same block to that owner can leave the older bytes
 * there; readers that check digests skip it, but that owner's copy is lost
 * until the block is rewritten. A conditional put in the peer protocol would
 * close this.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { BlockRef } from "../core/block_ref.ts";
import { blockDigest } from "../core/sector.ts";
import { NoPeersError, TorusError } from "../errors.ts";
import { type Logger, stderrLogger } from "../log.ts";
import type { PeerClient } from "../peer/transport.ts";
import type { Distributor } from "./distributor.ts";

/** Local blocks examined per tick (original: 50). */
export const REBALANCE_BLOCKS_PER_TICK = 50;
/** Refs per `hasBlocks` call (the original TDP carried at most 255). */
export const HAS_BLOCKS_BATCH_MAX = 255;
/** Timeout of every rebalancer call to a peer, in milliseconds (original: 5 s). */
export const REBALANCE_TIMEOUT_MS = 5_000;
/** The range read that fetches a copy's sector CRCs without its data. */
const DIGEST_PROBE = { offsetBytes: 0, lengthBytes: 1 } as const;

/** Options of {@linkcode Rebalancer}. */
export interface RebalancerOptions {
  /** The distributor whose local store is rebalanced (its ring, peers and store are used). */
  distributor: Distributor;
  /** Times the end of cycles. */
  clock: Clock;
  /** Default {@linkcode REBALANCE_BLOCKS_PER_TICK}. */
  blocksPerTick?: number;
  /** Default {@linkcode REBALANCE_TIMEOUT_MS}. */
  timeoutMs?: number;
  /** True for refs garbage collection proved dead: deleted here, never pushed. */
  isDead?: (ref: BlockRef) => boolean;
  /** Default: stderr at `warn`. */
  logger?: Logger;
}

/** What one tick did. */
export interface TickReport {
  /** Local refs examined. */
  checkedBlocks: number;
  /** Copies written to owners that lacked them. */
  sentBlocks: number;
  /** Local copies deleted (moved to their owners, or dead). */
  deletedBlocks: number;
  /** Local copies not owned here that had to be kept because a check failed. */
  keptBlocks: number;
  /** True when this tick finished a cycle over the local store. */
  cycleDone: boolean;
}

/** What the heartbeat reports (`models.RebalanceInfo`). */
export interface RebalanceStatus {
  /** False only after a whole cycle found nothing to move under an unchanged ring. */
  rebalancing: boolean;
  /** Blocks sent in the cycle running now. */
  cycleSentBlocks: number;
  /** Blocks sent in the last finished cycle. */
  lastRebalanceBlocks: number;
  /** When the last cycle finished, in ms since the epoch (0: never). */
  lastRebalanceFinishMs: number;
}

interface Cycle {
  refs: BlockRef[];
  next: number;
  ringVersion: number;
  ringChanged: boolean;
  sent: number;
  deleted: number;
  kept: number;
}

/**
 * Moves local copies to their owners, a bounded batch per tick.
 *
 * @example Usage
 * ```ts ignore
 * const rebalancer = new Rebalancer({ distributor, clock });
 * for (;;) {
 *   const report = await rebalancer.tick();
 *   await clock.sleep(2 * (report.sentBlocks + 1)); // rate limit, as the original
 * }
 * ```
 */
export class Rebalancer {
  readonly #distributor: Distributor;
  readonly #clock: Clock;
  readonly #blocksPerTick: number;
  readonly #timeoutMs: number;
  readonly #isDead: (ref: BlockRef) => boolean;
  readonly #logger: Logger;
  #cycle: Cycle | null = null;
  #status: RebalanceStatus = {
    rebalancing: true,
    cycleSentBlocks: 0,
    lastRebalanceBlocks: 0,
    lastRebalanceFinishMs: 0,
  };

  constructor(options: RebalancerOptions) {
    this.#distributor = options.distributor;
    this.#clock = options.clock;
    this.#blocksPerTick = options.blocksPerTick ?? REBALANCE_BLOCKS_PER_TICK;
    this.#timeoutMs = options.timeoutMs ?? REBALANCE_TIMEOUT_MS;
    this.#isDead = options.isDead ?? (() => false);
    this.#logger = options.logger ?? stderrLogger("warn", "rebalancer");
  }

  /** The progress to publish in the heartbeat. */
  status(): RebalanceStatus {
    return { ...this.#status };
  }

  /** Ticks until the cycle running (or a new one) is done; returns the totals. */
  async runCycle(): Promise<TickReport> {
    const total: TickReport = {
      checkedBlocks: 0,
      sentBlocks: 0,
      deletedBlocks: 0,
      keptBlocks: 0,
      cycleDone: false,
    };
    while (!total.cycleDone) {
      const report = await this.tick();
      total.checkedBlocks += report.checkedBlocks;
      total.sentBlocks += report.sentBlocks;
      total.deletedBlocks += report.deletedBlocks;
      total.keptBlocks += report.keptBlocks;
      total.cycleDone = report.cycleDone;
    }
    return total;
  }

  /** Examines the next batch of local refs. */
  async tick(): Promise<TickReport> {
    const distributor = this.#distributor;
    const local = distributor.localStore;
    const self = distributor.selfUuid;
    const ring = distributor.ring;
    const cycle = this.#cycle ??= {
      refs: local.blockRefs(),
      next: 0,
      ringVersion: ring.version,
      ringChanged: false,
      sent: 0,
      deleted: 0,
      kept: 0,
    };
    if (ring.version !== cycle.ringVersion) cycle.ringChanged = true;
    const batch = cycle.refs.slice(cycle.next, cycle.next + this.#blocksPerTick);
    cycle.next += batch.length;
    const report: TickReport = {
      checkedBlocks: 0,
      sentBlocks: 0,
      deletedBlocks: 0,
      keptBlocks: 0,
      cycleDone: false,
    };

    // Plan: which owners to check for which refs, and which copies may leave.
    const toCheck = new Map<string, BlockRef[]>();
    const leaving: BlockRef[] = [];
    const doubtful = new Set<string>();
    for (const ref of batch) {
      if (!(await local.hasBlock(ref))) continue; // deleted since the snapshot
      report.checkedBlocks++;
      if (this.#isDead(ref)) {
        if (await local.deleteBlock(ref)) report.deletedBlocks++;
        continue;
      }
      let owners: string[];
      try {
        const perm = ring.getPeers(ref);
        owners = perm.peers.slice(0, perm.replication);
      } catch (error) {
        if (error instanceof NoPeersError) continue; // nowhere to move it: keep it
        throw error;
      }
      for (const owner of owners) {
        if (owner === self) continue;
        let refs = toCheck.get(owner);
        if (refs === undefined) toCheck.set(owner, refs = []);
        refs.push(ref);
      }
      if (!owners.includes(self)) leaving.push(ref);
    }

    const leavingKeys = new Set(leaving.map((ref) => ref.key()));
    await Promise.all(
      [...toCheck].map(([uuid, refs]) => this.#syncPeer(uuid, refs, leavingKeys, doubtful, report)),
    );

    for (const ref of leaving) {
      if (doubtful.has(ref.key())) {
        report.keptBlocks++;
      } else if (await local.deleteBlock(ref)) {
        report.deletedBlocks++;
      }
    }
    if (report.deletedBlocks > 0) await local.flush();

    cycle.sent += report.sentBlocks;
    cycle.deleted += report.deletedBlocks;
    cycle.kept += report.keptBlocks;
    const working = cycle.sent + cycle.deleted + cycle.kept > 0 || cycle.ringChanged;
    this.#status.cycleSentBlocks = cycle.sent;
    if (working) this.#status.rebalancing = true;
    if (cycle.next >= cycle.refs.length) {
      report.cycleDone = true;
      this.#status = {
        rebalancing: working || distributor.ring.version !== cycle.ringVersion,
        cycleSentBlocks: 0,
        lastRebalanceBlocks: cycle.sent,
        lastRebalanceFinishMs: this.#clock.nowMs(),
      };
      this.#cycle = null;
    }
    return report;
  }

  /**
   * Makes sure peer `uuid` holds `refs`: pushes the missing ones, checks the
   * digests of those whose local copy may leave, flushes. Refs with any doubt
   * go into `doubtful`.
   */
  async #syncPeer(
    uuid: string,
    refs: BlockRef[],
    leavingKeys: Set<string>,
    doubtful: Set<string>,
    report: TickReport,
  ): Promise<void> {
    const local = this.#distributor.localStore;
    const options = { timeoutMs: this.#timeoutMs };
    const doubt = (ref: BlockRef, why: string) => {
      doubtful.add(ref.key());
      this.#logger.log("debug", `keeping ${ref}: ${why}`);
    };
    let client: PeerClient;
    try {
      client = this.#distributor.peerClient(uuid);
    } catch (error) {
      for (const ref of refs) doubt(ref, (error as Error).message);
      return;
    }
    let touched = false;
    for (let start = 0; start < refs.length; start += HAS_BLOCKS_BATCH_MAX) {
      const chunk = refs.slice(start, start + HAS_BLOCKS_BATCH_MAX);
      let has: boolean[];
      try {
        has = await client.hasBlocks(chunk, options);
        if (has.length !== chunk.length) {
          throw new TorusError(`${uuid} answered ${has.length} of ${chunk.length} checks`);
        }
      } catch (error) {
        if (!(error instanceof TorusError)) throw error;
        for (const ref of chunk) doubt(ref, `cannot check ${uuid}: ${error.message}`);
        continue;
      }
      for (const [i, ref] of chunk.entries()) {
        try {
          if (!has[i]) {
            const { data } = await local.readBlock(ref);
            await client.writeBlock(ref, data, options);
            report.sentBlocks++;
            touched = true;
          } else if (leavingKeys.has(ref.key())) {
            const [mine, theirs] = await Promise.all([
              local.readBlock(ref, DIGEST_PROBE),
              client.readBlock(ref, DIGEST_PROBE, options),
            ]);
            if (blockDigest(mine.sectorCrcs) !== blockDigest(theirs.sectorCrcs)) {
              doubt(ref, `${uuid} holds a different version`);
            }
            touched = true;
          }
        } catch (error) {
          if (!(error instanceof TorusError || error instanceof RangeError)) throw error;
          doubt(ref, `cannot copy to or compare with ${uuid}: ${error.message}`);
        }
      }
    }
    if (!touched) return;
    try {
      await client.flush(options);
    } catch (error) {
      if (!(error instanceof TorusError)) throw error;
      for (const ref of refs) doubt(ref, `${uuid} did not flush: ${error.message}`);
    }
  }
}
