/**
 * A simulated cluster for the distributor's tests: nodes with memory stores
 * behind a {@linkcode MemoryTransport}, a {@linkcode TestRing}, a liveness
 * table, one {@linkcode Distributor} per node, and clients.
 *
 * @module
 */
import { ManualClock } from "../clock.ts";
import type { BlockRef } from "../core/block_ref.ts";
import type { Logger } from "../log.ts";
import { MemoryTransport } from "../peer/memory_transport.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { Distributor, type DistributorOptions } from "./distributor.ts";
import { TestRing } from "./_test_ring.ts";

/** One simulated node. */
export interface TestNode {
  uuid: string;
  address: string;
  store: MemoryBlockStore;
  distributor: Distributor;
}

/** Options of {@linkcode TestCluster.create}. */
export interface TestClusterOptions {
  nodes: number;
  replication: number;
  blockSizeBytes?: number;
  numBlocks?: number;
  /** Options of every distributor (levels, cache). */
  distributor?: Partial<DistributorOptions>;
  /** Builds a node's store (default: a MemoryBlockStore). */
  store?: (
    uuid: string,
    options: { blockSizeBytes: number; numBlocks: number },
  ) => MemoryBlockStore;
}

/** A logger that keeps what it is told. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, log: (level, message) => lines.push(`${level}: ${message}`) };
}

/** Lets every pending promise reaction and zero-delay timer run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Awaits `promise`, advancing `clock` by `stepMs` while it is pending. */
export async function drive<T>(clock: ManualClock, promise: Promise<T>, stepMs = 50): Promise<T> {
  let done = false;
  promise.then(() => done = true, () => done = true);
  for (let i = 0; i < 100_000 && !done; i++) {
    await tick();
    if (!done) clock.advance(stepMs);
  }
  return await promise;
}

/** A simulated cluster. */
export class TestCluster {
  /** The clock of every node and of the network. */
  readonly clock = new ManualClock(1_700_000_000_000);
  /** The network. */
  readonly transport = new MemoryTransport({ clock: this.clock });
  /** The nodes by uuid. */
  readonly nodes = new Map<string, TestNode>();
  /** What every distributor logged. */
  readonly logger = memoryLogger();
  /** Uuids the heartbeat would report alive. */
  readonly alive = new Set<string>();
  /** Block size of every store. */
  readonly blockSizeBytes: number;
  /** Capacity of every node's store, in blocks. */
  readonly numBlocks: number;
  /** The ring installed last. */
  ring: TestRing;
  #options: TestClusterOptions;
  #distributors: Distributor[] = [];
  #clients = 0;

  private constructor(options: TestClusterOptions) {
    this.#options = options;
    this.blockSizeBytes = options.blockSizeBytes ?? 4096;
    this.numBlocks = options.numBlocks ?? 1000;
    this.ring = new TestRing(0, options.replication, []);
  }

  /** Builds a cluster of `nodes` nodes named n0, n1, … all in the ring. */
  static async create(options: TestClusterOptions): Promise<TestCluster> {
    const cluster = new TestCluster(options);
    const uuids = Array.from({ length: options.nodes }, (_, i) => `n${i}`);
    for (const uuid of uuids) await cluster.addNode(uuid);
    cluster.setRing(new TestRing(1, options.replication, uuids));
    return cluster;
  }

  /** Starts a node (not yet in the ring). */
  async addNode(uuid: string): Promise<TestNode> {
    const address = `mem://${uuid}`;
    const store = this.#options.store?.(uuid, {
      blockSizeBytes: this.blockSizeBytes,
      numBlocks: this.numBlocks,
    }) ?? this.#store();
    await this.transport.listen(address, store);
    this.alive.add(uuid);
    const distributor = this.distributor(uuid, store);
    const node = { uuid, address, store, distributor };
    this.nodes.set(uuid, node);
    return node;
  }

  /** A distributor for `selfUuid` over `local`, tracked for ring updates. */
  distributor(
    selfUuid: string,
    local: MemoryBlockStore,
    options: Partial<DistributorOptions> = {},
  ): Distributor {
    const distributor = new Distributor({
      selfUuid,
      local,
      transport: this.transport,
      ring: this.ring,
      peerAddress: (uuid) => this.alive.has(uuid) ? `mem://${uuid}` : undefined,
      clock: this.clock,
      logger: this.logger,
      ...this.#options.distributor,
      ...options,
    });
    this.#distributors.push(distributor);
    return distributor;
  }

  /** A client process (not a ring member) with a small local store. */
  client(options: Partial<DistributorOptions> = {}): Distributor {
    return this.distributor(`client${this.#clients++}`, this.#store(64), options);
  }

  /** Installs `ring` everywhere. */
  setRing(ring: TestRing): void {
    this.ring = ring;
    for (const distributor of this.#distributors) distributor.setRing(ring);
  }

  /** The node `uuid`. */
  node(uuid: string): TestNode {
    const node = this.nodes.get(uuid);
    if (node === undefined) throw new Error(`no node ${uuid}`);
    return node;
  }

  /** The node is unreachable, but the heartbeat still says it is alive. */
  partition(uuid: string): void {
    this.transport.partition(this.node(uuid).address);
  }

  /** Ends a {@linkcode TestCluster.partition}. */
  heal(uuid: string): void {
    this.transport.heal(this.node(uuid).address);
  }

  /** The node is down and known to be down. */
  kill(uuid: string): void {
    this.transport.partition(this.node(uuid).address);
    this.alive.delete(uuid);
  }

  /** Brings a killed node back with its store. */
  revive(uuid: string): void {
    this.transport.heal(this.node(uuid).address);
    this.alive.add(uuid);
  }

  /** Nodes whose stores hold `ref`, sorted. */
  async holders(ref: BlockRef): Promise<string[]> {
    const found: string[] = [];
    for (const node of this.nodes.values()) {
      if (await node.store.hasBlock(ref)) found.push(node.uuid);
    }
    return found.sort();
  }

  /** The owners of `ref` under the current ring, sorted. */
  owners(ref: BlockRef): string[] {
    const perm = this.ring.getPeers(ref);
    return perm.peers.slice(0, perm.replication).sort();
  }

  #store(numBlocks = this.numBlocks): MemoryBlockStore {
    return new MemoryBlockStore({ blockSizeBytes: this.blockSizeBytes, numBlocks });
  }
}
