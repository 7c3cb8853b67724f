/**
 * The NBD server: listens on TCP, serves many connections at once, each with
 * many requests in flight, and shuts down gracefully.
 *
 * @module
 */
import { BufferPool } from "../core/buffer_pool.ts";
import { assert } from "../assert.ts";
import { Budget } from "./budget.ts";
import { NbdConnection } from "./connection.ts";
import { NbdCounters, type NbdCountersSnapshot } from "./counters.ts";
import type { NbdExportProvider } from "./export.ts";
import { type NbdLogger, silentLogger } from "./log.ts";
import { NBD_DEFAULT_PORT, NBD_MAX_REQUEST_BYTES } from "./protocol.ts";

/** Default most requests in flight per connection (fio and nbdcopy use 16–64). */
export const NBD_REQUESTS_IN_FLIGHT_MAX = 128;
/**
 * Default most bytes of write payloads and read results one connection
 * holds: two maximum-size requests, or 64 requests of 1 MiB.
 */
export const NBD_CONNECTION_BUFFERED_BYTES_MAX = 2 * NBD_MAX_REQUEST_BYTES;
/**
 * Default most bytes of reads one connection serves at once (a longer read
 * runs alone): the buffers being filled and sent stay in the CPU's caches.
 * 1 MiB reads at queue depth 32 ran 13–37 % faster over a memory export
 * with a 4 MiB bound than with none; on torusd, 2 MiB did best of 1, 2, 4
 * and 8 MiB, and every bound used less CPU than none
 * (Documentation/benchmarks.md, session 10). Writes are not held back: the
 * I/O thread needs several in flight.
 */
export const NBD_READ_BYTES_IN_FLIGHT_MAX = 2 * 1024 * 1024;
/** Default most bytes of payloads and read results all connections hold together. */
export const NBD_SERVER_BUFFERED_BYTES_MAX = 256 * 1024 * 1024;
/** Idle payload and reply buffers the server keeps for reuse, in bytes. */
export const NBD_BUFFER_POOL_RETAIN_BYTES = 64 * 1024 * 1024;
/** Default most connections at once; more are closed as they arrive. */
export const NBD_CONNECTIONS_MAX = 256;
/** Default milliseconds a client has to finish the handshake. */
export const NBD_HANDSHAKE_TIMEOUT_MS = 30_000;
/** Default milliseconds `close()` lets requests in flight finish, then again for cleanup. */
export const NBD_CLOSE_TIMEOUT_MS = 10_000;
/** Milliseconds the accept loop pauses after an accept error (e.g. out of file descriptors). */
export const NBD_ACCEPT_RETRY_DELAY_MS = 100;

/** The limits of an {@linkcode NbdServer}; every field has a default above. */
export interface NbdServerLimits {
  /** Requests dispatched and not yet answered, per connection. */
  requestsInFlightMax: number;
  /** Bytes of payloads and read results, per connection; at least 32 MiB. */
  bufferedBytesMax: number;
  /** Bytes of payloads and read results over all connections; at least 32 MiB. */
  serverBufferedBytesMax: number;
  /** Bytes of reads served at once, per connection; a longer read runs alone. */
  readBytesInFlightMax: number;
  /** Connections at once. */
  connectionsMax: number;
  /** Milliseconds to finish the handshake. */
  handshakeTimeoutMs: number;
  /** Milliseconds `close()` waits for requests in flight (and again for cleanup). */
  closeTimeoutMs: number;
}

/** Options of {@linkcode NbdServer.listen}. */
export interface NbdServerOptions {
  /** Where exports come from. */
  provider: NbdExportProvider;
  /** Address to listen on. Default `127.0.0.1`. */
  hostname?: string;
  /** TCP port; 0 picks a free one (see {@linkcode NbdServer.port}). Default 10809. */
  port?: number;
  /** Receives log entries. Default: none. */
  logger?: NbdLogger;
  /** Overrides of the default limits. */
  limits?: Partial<NbdServerLimits>;
  /** The time source of request latencies, in milliseconds. Default `performance.now`. */
  nowMs?: () => number;
}

/** A snapshot of the server's load. */
export interface NbdServerStats {
  /** Open connections, in any phase. */
  connections: number;
  /** Requests in flight over all connections. */
  requestsInFlight: number;
  /** Bytes of payloads and read results held over all connections. */
  bufferedBytes: number;
}

/**
 * An NBD server over TCP (fixed newstyle handshake, structured replies).
 *
 * @example Usage
 * ```ts ignore
 * import { NbdServer } from "./server.ts";
 * import { MemoryExportProvider } from "./memory_export.ts";
 * const server = NbdServer.listen({
 *   provider: new MemoryExportProvider([{ name: "disk", sizeBytes: 64 << 20 }]),
 *   port: 0,
 * });
 * console.log(`nbd://127.0.0.1:${server.port}/disk`);
 * await server.close();
 * ```
 */
export class NbdServer {
  #listener: Deno.TcpListener;
  #provider: NbdExportProvider;
  #log: NbdLogger;
  #limits: NbdServerLimits;
  #serverBytes: Budget;
  #buffers = new BufferPool(NBD_BUFFER_POOL_RETAIN_BYTES);
  #connections = new Set<NbdConnection>();
  #counters: NbdCounters;
  #closing = false;
  #closed: Promise<void> | null = null;
  #acceptLoop: Promise<void>;

  private constructor(listener: Deno.TcpListener, options: NbdServerOptions) {
    this.#listener = listener;
    this.#provider = options.provider;
    this.#log = options.logger ?? silentLogger;
    this.#limits = {
      requestsInFlightMax: NBD_REQUESTS_IN_FLIGHT_MAX,
      bufferedBytesMax: NBD_CONNECTION_BUFFERED_BYTES_MAX,
      serverBufferedBytesMax: NBD_SERVER_BUFFERED_BYTES_MAX,
      readBytesInFlightMax: NBD_READ_BYTES_IN_FLIGHT_MAX,
      connectionsMax: NBD_CONNECTIONS_MAX,
      handshakeTimeoutMs: NBD_HANDSHAKE_TIMEOUT_MS,
      closeTimeoutMs: NBD_CLOSE_TIMEOUT_MS,
      ...options.limits,
    };
    this.#serverBytes = new Budget(this.#limits.serverBufferedBytesMax);
    this.#counters = new NbdCounters(options.nowMs);
    this.#acceptLoop = this.#accept();
  }

  /**
   * Starts a server listening on `hostname:port`.
   *
   * @throws {RangeError} on a limit too small to serve a maximum-size request.
   * @throws {Deno.errors.AddrInUse} when the port is taken.
   */
  static listen(options: NbdServerOptions): NbdServer {
    const limits = options.limits ?? {};
    for (const key of ["bufferedBytesMax", "serverBufferedBytesMax"] as const) {
      const value = limits[key];
      if (value !== undefined && !(value >= NBD_MAX_REQUEST_BYTES)) {
        throw new RangeError(`${key} must be at least ${NBD_MAX_REQUEST_BYTES}, got ${value}`);
      }
    }
    for (
      const key of [
        "requestsInFlightMax",
        "readBytesInFlightMax",
        "connectionsMax",
        "handshakeTimeoutMs",
        "closeTimeoutMs",
      ] as const
    ) {
      const value = limits[key];
      if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
        throw new RangeError(`${key} must be a positive integer, got ${value}`);
      }
    }
    const listener = Deno.listen({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? NBD_DEFAULT_PORT,
      transport: "tcp",
    });
    return new NbdServer(listener, options);
  }

  /** The bound port (useful after listening on port 0). */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** The bound address. */
  get hostname(): string {
    return this.#listener.addr.hostname;
  }

  /** The current load. */
  stats(): NbdServerStats {
    let requestsInFlight = 0;
    for (const connection of this.#connections) requestsInFlight += connection.inFlight;
    return {
      connections: this.#connections.size,
      requestsInFlight,
      bufferedBytes: this.#serverBytes.used,
    };
  }

  /** What the server has served since it started (requests, latencies, connections). */
  counters(): NbdCountersSnapshot {
    return this.#counters.snapshot();
  }

  /**
   * Stops accepting, lets requests in flight finish (new ones get
   * `ESHUTDOWN`) for up to `closeTimeoutMs`, then closes every connection,
   * flushing and closing its export. Safe to call more than once.
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
    const timeoutMs = this.#limits.closeTimeoutMs;
    await Promise.all([...this.#connections].map((c) => c.shutdown(timeoutMs)));
    if (this.#connections.size > 0) {
      this.#log({
        level: "warn",
        message: `${this.#connections.size} connections still closing after ${timeoutMs} ms`,
      });
    }
  }

  async #accept(): Promise<void> {
    while (!this.#closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        this.#log({ level: "error", message: "accept failed", error });
        await new Promise((resolve) => setTimeout(resolve, NBD_ACCEPT_RETRY_DELAY_MS));
        continue;
      }
      const peer = `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
      if (this.#closing || this.#connections.size >= this.#limits.connectionsMax) {
        this.#counters.connectionRefused();
        this.#log({ level: "warn", message: "connection refused: at the limit", peer });
        try {
          conn.close();
        } catch {
          // Already gone.
        }
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch {
        // The peer may already be gone; serving will notice.
      }
      const connection = new NbdConnection(conn, peer, {
        provider: this.#provider,
        limits: this.#limits,
        serverBytes: this.#serverBytes,
        buffers: this.#buffers,
        isShuttingDown: () => this.#closing,
        log: this.#log,
        counters: this.#counters,
      });
      this.#counters.connectionAccepted();
      this.#connections.add(connection);
      void connection.serve().finally(() => {
        this.#connections.delete(connection);
        assert(connection.phase === "closed", "connection ended without closing");
      });
    }
  }
}
