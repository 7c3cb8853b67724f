/**
 * The peer protocol server: serves one {@linkcode BlockStore} over TCP to
 * many connections at once, each with many requests in flight, within
 * bounds on connections, requests and bytes; shuts down gracefully.
 *
 * @module
 */
import { assert } from "../assert.ts";
import { type Clock, SystemClock } from "../clock.ts";
import { type Logger, silentLogger } from "../log.ts";
import { Budget } from "../nbd/budget.ts";
import type { BlockStore } from "../storage/block_store.ts";
import { formatPeerAddress, PEER_PORT_DEFAULT } from "./address.ts";
import {
  encodeHello,
  encodeNodeUuid,
  HelloStatus,
  PEER_HELLO_BYTES,
  PEER_PROTOCOL_VERSION,
} from "./frame.ts";
import {
  requestCostBytesMax,
  ServerConnection,
  type ServerConnectionLimits,
} from "./server_connection.ts";
import type { PeerListener, PeerListenerStats } from "./transport.ts";

const MiB = 1024 * 1024;

/** Default most requests in flight per connection (the client pipelines up to this many). */
export const PEER_SERVER_REQUESTS_IN_FLIGHT_MAX = 64;
/**
 * Default most bytes of payloads and replies one connection holds: 128
 * requests of a 512 KiB block, or four of the largest 16 MiB block.
 */
export const PEER_SERVER_CONNECTION_BUFFERED_BYTES_MAX = 64 * MiB;
/** Default most bytes of payloads and replies all connections hold together. */
export const PEER_SERVER_BUFFERED_BYTES_MAX = 512 * MiB;
/** Default most connections at once; more get a `busy` hello and are closed. */
export const PEER_SERVER_CONNECTIONS_MAX = 256;
/** Default milliseconds a client has, after connecting, to send its hello. */
export const PEER_SERVER_HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * Default milliseconds without a frame (and nothing in flight) before a
 * connection is closed; clients send a keepalive well within it.
 */
export const PEER_SERVER_IDLE_TIMEOUT_MS = 60_000;
/** Default milliseconds one reply write may block (the client is not reading) before closing. */
export const PEER_SERVER_WRITE_STALL_TIMEOUT_MS = 30_000;
/** Default milliseconds `close()` lets requests in flight finish, then again for cleanup. */
export const PEER_SERVER_CLOSE_TIMEOUT_MS = 10_000;
/** Milliseconds a refused connection has to send its hello before it is closed without an answer. */
export const PEER_SERVER_REFUSE_TIMEOUT_MS = 1_000;
/** Milliseconds the accept loop pauses after an accept error (e.g. out of file descriptors). */
export const PEER_SERVER_ACCEPT_RETRY_DELAY_MS = 100;

/** The limits of a {@linkcode PeerServer}; every field has a default above. */
export interface PeerServerLimits extends ServerConnectionLimits {
  /** Bytes of payloads and replies over all connections. */
  serverBufferedBytesMax: number;
  /** Connections at once. */
  connectionsMax: number;
  /** Milliseconds `close()` waits for requests in flight (and again for cleanup). */
  closeTimeoutMs: number;
}

/** Options of {@linkcode PeerServer.listen}. */
export interface PeerServerOptions {
  /** The store served; its block size is the one clients must use. The server never closes it. */
  store: BlockStore;
  /** Address to listen on. Default `127.0.0.1`. */
  hostname?: string;
  /** TCP port; 0 picks a free one. Default {@linkcode PEER_PORT_DEFAULT}. */
  port?: number;
  /** This node's uuid, sent in the hello. Default: anonymous. */
  nodeUuid?: string;
  /** Time and timers. Default: the system clock. */
  clock?: Clock;
  /** Receives log lines. Default: none. */
  logger?: Logger;
  /** Overrides of the default limits. */
  limits?: Partial<PeerServerLimits>;
}

/** A snapshot of the server's load. */
export type PeerServerStats = PeerListenerStats;

/**
 * A peer protocol server over TCP.
 *
 * @example Usage
 * ```ts ignore
 * import { PeerServer } from "./peer_server.ts";
 * import { MemoryBlockStore } from "../storage/memory_block_store.ts";
 * const store = new MemoryBlockStore({ blockSizeBytes: 512 * 1024, numBlocks: 64 });
 * const server = PeerServer.listen({ store, port: 0 });
 * console.log(server.address); // tdp://127.0.0.1:40123
 * await server.close();
 * ```
 */
export class PeerServer implements PeerListener {
  #listener: Deno.TcpListener;
  #store: BlockStore;
  #nodeUuid: Uint8Array;
  #clock: Clock;
  #log: Logger;
  #limits: PeerServerLimits;
  #serverBytes: Budget;
  #connections = new Set<ServerConnection>();
  #refusals = new Set<Promise<void>>();
  #closing = false;
  #closed: Promise<void> | null = null;
  #acceptLoop: Promise<void>;

  private constructor(
    listener: Deno.TcpListener,
    options: PeerServerOptions,
    limits: PeerServerLimits,
  ) {
    this.#listener = listener;
    this.#store = options.store;
    this.#nodeUuid = encodeNodeUuid(options.nodeUuid);
    this.#clock = options.clock ?? new SystemClock();
    this.#log = options.logger ?? silentLogger;
    this.#limits = limits;
    this.#serverBytes = new Budget(limits.serverBufferedBytesMax);
    this.#acceptLoop = this.#accept();
  }

  /**
   * Starts a server listening on `hostname:port`.
   *
   * @throws {RangeError} on a limit that is not a positive integer, or a
   * byte limit too small for one largest request of the store's block size.
   * @throws {TypeError} on a malformed node uuid.
   * @throws {Deno.errors.AddrInUse} when the port is taken.
   */
  static listen(options: PeerServerOptions): PeerServer {
    const limits: PeerServerLimits = {
      requestsInFlightMax: PEER_SERVER_REQUESTS_IN_FLIGHT_MAX,
      bufferedBytesMax: PEER_SERVER_CONNECTION_BUFFERED_BYTES_MAX,
      serverBufferedBytesMax: PEER_SERVER_BUFFERED_BYTES_MAX,
      connectionsMax: PEER_SERVER_CONNECTIONS_MAX,
      handshakeTimeoutMs: PEER_SERVER_HANDSHAKE_TIMEOUT_MS,
      idleTimeoutMs: PEER_SERVER_IDLE_TIMEOUT_MS,
      writeStallTimeoutMs: PEER_SERVER_WRITE_STALL_TIMEOUT_MS,
      closeTimeoutMs: PEER_SERVER_CLOSE_TIMEOUT_MS,
      ...options.limits,
    };
    for (const [key, value] of Object.entries(limits)) {
      if (!(Number.isSafeInteger(value) && value > 0)) {
        throw new RangeError(
          `Cannot use peer server limit ${key}: ${value} is not a positive integer`,
        );
      }
    }
    const costMax = requestCostBytesMax(options.store.blockSizeBytes);
    for (const key of ["bufferedBytesMax", "serverBufferedBytesMax"] as const) {
      if (limits[key] < costMax) {
        throw new RangeError(
          `Cannot use peer server limit ${key}: ${limits[key]} bytes do not hold one request ` +
            `of ${costMax} bytes`,
        );
      }
    }
    encodeNodeUuid(options.nodeUuid);
    const listener = Deno.listen({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? PEER_PORT_DEFAULT,
      transport: "tcp",
    });
    return new PeerServer(listener, options, limits);
  }

  /** The bound port (useful after listening on port 0). */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** The bound address. */
  get hostname(): string {
    return this.#listener.addr.hostname;
  }

  /** The address peers dial: `tdp://host:port`. */
  get address(): string {
    return formatPeerAddress(this.hostname, this.port);
  }

  /** The current load. */
  stats(): PeerServerStats {
    let requestsInFlight = 0;
    for (const connection of this.#connections) requestsInFlight += connection.inFlight;
    return {
      connections: this.#connections.size,
      requestsInFlight,
      bufferedBytes: this.#serverBytes.used,
    };
  }

  /**
   * Stops accepting, lets requests in flight finish (new ones get
   * `SHUTTING_DOWN`) for up to `closeTimeoutMs`, then closes every
   * connection. The store stays open. Safe to call more than once.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    await this.#acceptLoop;
    await Promise.all(this.#refusals);
    const timeoutMs = this.#limits.closeTimeoutMs;
    await Promise.all([...this.#connections].map((c) => c.shutdown(timeoutMs)));
    if (this.#connections.size > 0) {
      this.#log.log("warn", `peer server: ${this.#connections.size} connections still closing`);
    }
  }

  async #accept(): Promise<void> {
    while (!this.#closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        this.#log.log("error", `peer server: accept failed: ${error}`);
        await this.#clock.sleep(PEER_SERVER_ACCEPT_RETRY_DELAY_MS);
        continue;
      }
      const peer = `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
      if (this.#closing || this.#connections.size >= this.#limits.connectionsMax) {
        this.#log.log("warn", `peer server: refused ${peer}: at the limit or closing`);
        const refusal: Promise<void> = this.#refuse(conn).finally(() =>
          this.#refusals.delete(refusal)
        );
        this.#refusals.add(refusal);
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch {
        // The peer may already be gone; serving will notice.
      }
      const connection = new ServerConnection(conn, peer, {
        store: this.#store,
        limits: this.#limits,
        serverBytes: this.#serverBytes,
        nodeUuid: this.#nodeUuid,
        clock: this.#clock,
        isShuttingDown: () => this.#closing,
        log: this.#log,
      });
      this.#connections.add(connection);
      void connection.serve().finally(() => {
        this.#connections.delete(connection);
        assert(connection.phase === "closed", "connection ended without closing");
      });
    }
  }

  /**
   * Tells a connection over the limit why, then closes it. The client's hello
   * is read first (for a short while): closing with unread bytes would reset
   * the connection and could drop the answer.
   */
  async #refuse(conn: Deno.TcpConn): Promise<void> {
    const timer = this.#clock.setTimer(PEER_SERVER_REFUSE_TIMEOUT_MS, () => {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    });
    try {
      await conn.read(new Uint8Array(PEER_HELLO_BYTES));
      await conn.write(encodeHello({
        versionMin: PEER_PROTOCOL_VERSION,
        versionMax: PEER_PROTOCOL_VERSION,
        status: this.#closing ? HelloStatus.shuttingDown : HelloStatus.busy,
        blockSizeBytes: this.#store.blockSizeBytes,
        requestsInFlightMax: this.#limits.requestsInFlightMax,
        nodeUuid: this.#nodeUuid,
      }));
    } catch {
      // Gone already.
    }
    this.#clock.clearTimer(timer);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}
