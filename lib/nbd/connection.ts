/**
 * One client connection of the NBD server, from accept to close: the
 * handshake (bounded in time), the transmission phase, and the release of
 * the export and the socket however the connection ends.
 *
 * @module
 */
import type { BufferPool } from "../core/buffer_pool.ts";
import { AssertionError } from "../assert.ts";
import type { Budget } from "./budget.ts";
import { ByteReader } from "./byte_reader.ts";
import type { NbdExport, NbdExportProvider } from "./export.ts";
import { negotiate } from "./handshake.ts";
import { type NbdLogger, withPeer } from "./log.ts";
import { SerialWriter } from "./serial_writer.ts";
import type { NbdCounters } from "./counters.ts";
import { Transmission, type TransmissionLimits } from "./transmission.ts";

/** What a connection needs from its server. */
export interface ConnectionContext {
  /** Where exports come from. */
  provider: NbdExportProvider;
  /** Limits of the connection. */
  limits: TransmissionLimits & {
    /** Milliseconds a client has to finish the handshake before it is dropped. */
    handshakeTimeoutMs: number;
  };
  /** The server-wide byte budget. */
  serverBytes: Budget;
  /** The server's pool of payload and reply buffers. */
  buffers?: BufferPool;
  /** True once the server is closing. */
  isShuttingDown(): boolean;
  /** Receives log entries (the connection adds its peer). */
  log: NbdLogger;
  /** The server's request counters; none when absent. */
  counters?: NbdCounters;
}

/** Where a connection is in its life. */
export type ConnectionPhase = "handshake" | "transmission" | "closing" | "closed";

/** A socket a connection serves: `Deno.Conn`, or anything with these members. */
export interface ConnectionSocket {
  /** Reads into `buffer`; `null` at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes a prefix of `bytes`; resolves to its length. */
  write(bytes: Uint8Array): Promise<number>;
  /** Closes the socket; pending reads and writes fail. */
  close(): void;
}

/**
 * Serves one client. {@linkcode NbdConnection.serve} never rejects except on
 * a bug: every network or export failure ends (only) this connection.
 */
export class NbdConnection {
  /** The client's address, for logs. */
  readonly peer: string;
  #socket: ConnectionSocket;
  #context: ConnectionContext;
  #log: NbdLogger;
  #phase: ConnectionPhase = "handshake";
  #transmission: Transmission | null = null;
  #socketClosed = false;
  #served: Promise<void> | null = null;

  /** Wraps an accepted socket; {@linkcode NbdConnection.serve} starts serving it. */
  constructor(socket: ConnectionSocket, peer: string, context: ConnectionContext) {
    this.#socket = socket;
    this.peer = peer;
    this.#context = context;
    this.#log = withPeer(context.log, peer);
  }

  /** Where the connection is in its life. */
  get phase(): ConnectionPhase {
    return this.#phase;
  }

  /** Requests in flight (0 outside transmission). */
  get inFlight(): number {
    return this.#transmission?.inFlight ?? 0;
  }

  /** Serves the connection to its end; resolves once the export and socket are released. */
  serve(): Promise<void> {
    this.#served ??= this.#serve();
    return this.#served;
  }

  /**
   * Ends the connection for a server shutdown: a connection in the handshake
   * is closed at once; one in transmission answers its requests in flight
   * (new ones get `ESHUTDOWN`) for up to `timeoutMs`, then is closed.
   * Resolves when the connection has ended, or after `timeoutMs` more.
   */
  async shutdown(timeoutMs: number): Promise<void> {
    if (this.#transmission !== null) await withTimeout(this.#transmission.drained(), timeoutMs);
    this.#closeSocket();
    if (this.#served !== null) await withTimeout(this.#served, timeoutMs);
  }

  async #serve(): Promise<void> {
    const reader = new ByteReader(this.#socket);
    const writer = new SerialWriter(this.#socket);
    let exp: NbdExport | null = null;
    try {
      const timer = setTimeout(() => {
        this.#log({ level: "info", message: "handshake timed out" });
        this.#closeSocket();
      }, this.#context.limits.handshakeTimeoutMs);
      let result;
      try {
        result = await negotiate(reader, writer, {
          provider: this.#context.provider,
          isShuttingDown: this.#context.isShuttingDown,
          log: this.#log,
        });
      } finally {
        clearTimeout(timer);
      }
      if (result === null) return;
      exp = result.export;
      if (this.#socketClosed) return;
      this.#phase = "transmission";
      this.#log({
        level: "debug",
        message: `export ${exp.name} attached (flags 0x${result.transmissionFlags.toString(16)})`,
      });
      this.#transmission = new Transmission({
        reader,
        writer,
        export: exp,
        structuredReplies: result.structuredReplies,
        blockStatus: result.blockStatus,
        limits: this.#context.limits,
        serverBytes: this.#context.serverBytes,
        buffers: this.#context.buffers,
        isShuttingDown: this.#context.isShuttingDown,
        log: this.#log,
        counters: this.#context.counters,
      });
      const end = await this.#transmission.run();
      this.#log({ level: "debug", message: `transmission ended: ${end}` });
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      this.#logEnd(error);
    } finally {
      this.#phase = "closing";
      await writer.idle();
      if (exp !== null) await this.#release(exp);
      this.#closeSocket();
      writer.fail();
      this.#phase = "closed";
    }
  }

  async #release(exp: NbdExport): Promise<void> {
    try {
      if (!exp.readOnly) await exp.flush();
    } catch (error) {
      this.#log({ level: "warn", message: `flush of export ${exp.name} failed`, error });
    }
    try {
      await exp.close();
    } catch (error) {
      this.#log({ level: "warn", message: `close of export ${exp.name} failed`, error });
    }
  }

  #logEnd(error: unknown): void {
    if (error instanceof SyntaxError) {
      this.#log({ level: "warn", message: `protocol error: ${error.message}; closing`, error });
    } else if (this.#socketClosed || isDisconnect(error)) {
      this.#log({ level: "debug", message: "client went away", error });
    } else {
      this.#log({ level: "warn", message: "connection failed", error });
    }
  }

  #closeSocket(): void {
    if (this.#socketClosed) return;
    this.#socketClosed = true;
    try {
      this.#socket.close();
    } catch {
      // Already closed by the runtime.
    }
  }
}

function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.ConnectionAborted;
}

/** Waits for `promise` or `timeoutMs`, whichever comes first; never rejects. */
async function withTimeout(promise: Promise<unknown>, timeoutMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      promise.then(() => {}, () => {}),
      new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
