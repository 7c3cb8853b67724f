/**
 * The TCP {@linkcode Transport}: dials `tdp://host:port` addresses with a
 * {@linkcode TcpPeerClient} and serves a store with a {@linkcode PeerServer},
 * both speaking the peer protocol (`Documentation/peer_protocol.md`).
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { BlockStore } from "../storage/block_store.ts";
import { parsePeerAddress } from "./address.ts";
import { checkBlockSize, encodeNodeUuid } from "./frame.ts";
import { type PeerClientLimits, peerClientLimits, TcpPeerClient } from "./peer_client.ts";
import { PeerServer, type PeerServerLimits } from "./peer_server.ts";
import type { Transport } from "./transport.ts";

/** Options of a {@linkcode TcpTransport}. */
export interface TcpTransportOptions {
  /** The cluster block size: clients send it, servers serve stores of it. */
  blockSizeBytes: number;
  /** This node's uuid, sent in every hello. Default: anonymous. */
  nodeUuid?: string;
  /** Time and timers. Default: the system clock. */
  clock?: Clock;
  /** Receives log lines of clients and servers. Default: none. */
  logger?: Logger;
  /** Overrides of the client defaults (timeouts, in-flight bound). */
  clientLimits?: Partial<PeerClientLimits>;
  /** Overrides of the server defaults (connections, buffers, timeouts). */
  serverLimits?: Partial<PeerServerLimits>;
}

/**
 * Peers over TCP.
 *
 * @example Usage
 * ```ts ignore
 * import { TcpTransport } from "./tcp_transport.ts";
 * import { MemoryBlockStore } from "../storage/memory_block_store.ts";
 * const transport = new TcpTransport({ blockSizeBytes: 512 * 1024 });
 * const store = new MemoryBlockStore({ blockSizeBytes: 512 * 1024, numBlocks: 64 });
 * const listener = await transport.listen("tdp://127.0.0.1:0", store);
 * const client = transport.dial(listener.address);
 * await client.flush();
 * await client.close();
 * await listener.close();
 * ```
 */
export class TcpTransport implements Transport {
  /** The cluster block size. */
  readonly blockSizeBytes: number;
  #options: TcpTransportOptions;

  /**
   * Creates a transport.
   *
   * @throws {RangeError} on a block size that is not whole sectors, or a bad client limit.
   * @throws {TypeError} on a malformed node uuid.
   */
  constructor(options: TcpTransportOptions) {
    checkBlockSize(options.blockSizeBytes);
    encodeNodeUuid(options.nodeUuid);
    peerClientLimits(options.clientLimits);
    this.blockSizeBytes = options.blockSizeBytes;
    this.#options = options;
  }

  /**
   * A client of the peer at `address`; connects on the first call.
   *
   * @throws {TypeError} when `address` is not `tdp://host[:port]`.
   * @throws {RangeError} on port 0 or out of range.
   */
  dial(address: string): TcpPeerClient {
    return new TcpPeerClient({
      address,
      blockSizeBytes: this.blockSizeBytes,
      nodeUuid: this.#options.nodeUuid,
      clock: this.#options.clock,
      logger: this.#options.logger,
      limits: this.#options.clientLimits,
    });
  }

  /**
   * Serves `store` at `address` (`tdp://host:0` picks a free port; the
   * listener's `address` has the real one).
   *
   * @throws {TypeError} when `address` is not `tdp://host[:port]`.
   * @throws {RangeError} when the store's block size is not the transport's, or on a bad limit.
   * @throws {Deno.errors.AddrInUse} when the port is taken.
   */
  async listen(address: string, store: BlockStore): Promise<PeerServer> {
    const { hostname, port } = parsePeerAddress(address, true);
    if (store.blockSizeBytes !== this.blockSizeBytes) {
      throw new RangeError(
        `Cannot serve a store of ${store.blockSizeBytes}-byte blocks: the cluster uses ` +
          `${this.blockSizeBytes}`,
      );
    }
    return PeerServer.listen({
      store,
      hostname,
      port,
      nodeUuid: this.#options.nodeUuid,
      clock: this.#options.clock,
      logger: this.#options.logger,
      limits: this.#options.serverLimits,
    });
  }
}
