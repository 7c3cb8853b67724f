/**
 * The transmission phase of one connection: read requests, dispatch each at
 * once without waiting for earlier ones, and write each reply (matched by
 * handle, possibly out of order) when its request completes.
 *
 * Reading stops while the connection is at its limit of requests in flight
 * or of bytes held (write payloads and read buffers), and while the
 * server-wide byte budget is exhausted, so memory stays bounded whatever
 * the client sends.
 *
 * @module
 */
import { assert, AssertionError } from "../assert.ts";
import { Budget } from "./budget.ts";
import type { ByteReader } from "./byte_reader.ts";
import { errnoForError, errorMessage, type NbdExport } from "./export.ts";
import type { NbdLogger } from "./log.ts";
import {
  type BlockStatusExtent,
  checkRequest,
  commandName,
  decodeRequest,
  encodeBlockStatusReply,
  encodeOffsetDataHeader,
  encodeSimpleReply,
  encodeStructuredError,
  errnoName,
  NBD_BASE_ALLOCATION_ID,
  NBD_BLOCK_STATUS_DESCRIPTORS_MAX,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EIO,
  NBD_ESHUTDOWN,
  NBD_MAX_REQUEST_BYTES,
  NBD_OFFSET_DATA_HEADER_BYTES,
  NBD_REQUEST_BYTES,
  NBD_SIMPLE_REPLY_BYTES,
  type NbdRequest,
  type RequestRejection,
} from "./protocol.ts";
import type { SerialWriter } from "./serial_writer.ts";
import type { NbdCounters } from "./counters.ts";
import { BUFFER_POOL_HEADROOM_BYTES, type BufferPool } from "../core/buffer_pool.ts";
import { Slab } from "../core/slab.ts";

/**
 * Where a read's data starts in its reply buffer: room in front for the
 * largest read reply header, rounded up to keep the data aligned, and within
 * the pool's headroom so that a power-of-two read takes a buffer of its own
 * class.
 */
const NBD_READ_DATA_OFFSET_BYTES = 32;
assert(
  NBD_OFFSET_DATA_HEADER_BYTES <= NBD_READ_DATA_OFFSET_BYTES &&
    NBD_SIMPLE_REPLY_BYTES <= NBD_READ_DATA_OFFSET_BYTES &&
    NBD_READ_DATA_OFFSET_BYTES <= BUFFER_POOL_HEADROOM_BYTES,
  "a read reply's header does not fit in front of its data",
);

/** Limits of one connection. */
export interface TransmissionLimits {
  /** Requests dispatched and not yet answered. */
  requestsInFlightMax: number;
  /** Bytes of write payloads and read results held; at least {@linkcode NBD_MAX_REQUEST_BYTES}. */
  bufferedBytesMax: number;
  /**
   * Bytes of reads served at once; a longer read runs alone. Fewer, smaller
   * buffers in use stay in the CPU's caches between the copy into them and
   * the copy out (see `NBD_READ_BYTES_IN_FLIGHT_MAX`).
   */
  readBytesInFlightMax: number;
}

/** What the transmission phase needs. */
export interface TransmissionContext {
  /** Reads requests from the client. */
  reader: ByteReader;
  /** Writes replies to the client. */
  writer: SerialWriter;
  /** The export the handshake opened. */
  export: NbdExport;
  /** Whether structured replies were agreed. */
  structuredReplies: boolean;
  /** Whether `base:allocation` was selected: `NBD_CMD_BLOCK_STATUS` is served. */
  blockStatus?: boolean;
  /** Limits of this connection. */
  limits: TransmissionLimits;
  /** The server-wide byte budget every connection draws from. */
  serverBytes: Budget;
  /** True once the server is closing: new requests get `ESHUTDOWN`. */
  isShuttingDown(): boolean;
  /** Receives log entries. */
  log: NbdLogger;
  /**
   * Buffers for write payloads and read replies, shared by the server's
   * connections; without it every request allocates its own.
   */
  buffers?: BufferPool;
  /** Counts every answered request, with its latency; none when absent. */
  counters?: NbdCounters;
}

/** Why the request loop ended. */
export type TransmissionEnd =
  /** The client sent `NBD_CMD_DISC`. */
  | "disconnect"
  /** The client closed the connection between requests. */
  | "eof"
  /** The client broke the protocol; the connection must be closed. */
  | "protocol-error";

/**
 * Serves requests on one connection until it ends.
 */
export class Transmission {
  #context: TransmissionContext;
  #slots: Budget;
  #bytes: Budget;
  /** Bytes of reads being served ({@linkcode TransmissionLimits.readBytesInFlightMax}). */
  #reads: Budget;
  #inFlight = new Set<Promise<void>>();
  /** Where the headers of successful replies are carved from (see {@linkcode Slab}). */
  #headers = new Slab();
  #drainWaiters: (() => void)[] = [];

  /**
   * Prepares to serve; {@linkcode Transmission.run} starts.
   *
   * @throws {RangeError} when `bufferedBytesMax` cannot hold a maximum-size request.
   */
  constructor(context: TransmissionContext) {
    if (context.limits.bufferedBytesMax < NBD_MAX_REQUEST_BYTES) {
      throw new RangeError(`bufferedBytesMax must be at least ${NBD_MAX_REQUEST_BYTES}`);
    }
    this.#context = context;
    this.#slots = new Budget(context.limits.requestsInFlightMax);
    this.#bytes = new Budget(context.limits.bufferedBytesMax);
    this.#reads = new Budget(context.limits.readBytesInFlightMax);
  }

  /** Requests dispatched and not yet answered. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Bytes of payloads and read results this connection holds. */
  get bufferedBytes(): number {
    return this.#bytes.used;
  }

  /** Resolves when no request is in flight. Never rejects. */
  drained(): Promise<void> {
    if (this.#inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Reads and dispatches requests until the client disconnects, leaves or
   * breaks the protocol; then waits for every request in flight to be
   * answered (or to fail to be).
   *
   * @throws the socket's error when reading fails (connection reset, closed).
   */
  async run(): Promise<TransmissionEnd> {
    try {
      return await this.#loop();
    } finally {
      // Replies held back (see #loop) must leave for the requests in flight to finish.
      this.#context.writer.uncork();
      while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    }
  }

  async #loop(): Promise<TransmissionEnd> {
    const { reader, writer, export: exp, structuredReplies, log } = this.#context;
    const requestContext = {
      sizeBytes: exp.sizeBytes,
      readOnly: exp.readOnly,
      structuredReplies,
      blockStatus: this.#context.blockStatus ?? false,
    };
    for (;;) {
      // Replies of requests that arrived together leave together: hold them
      // while another request is already buffered, write them before waiting.
      if (reader.bufferedBytes >= NBD_REQUEST_BYTES) writer.cork();
      else this.#beforeWait();
      // Stop reading the socket while at the limit of requests in flight.
      if (!this.#slots.tryAcquire(1)) {
        this.#beforeWait();
        await this.#slots.acquire(1);
      }
      let slotHeld = true;
      try {
        const header = await reader.readView(NBD_REQUEST_BYTES);
        if (header === null) return "eof";
        let request: NbdRequest;
        try {
          request = decodeRequest(header);
        } catch (error) {
          log({ level: "warn", message: "bad request; closing", error });
          return "protocol-error";
        }
        if (request.type === NBD_CMD_DISC) return "disconnect";

        const rejection: RequestRejection | null = this.#context.isShuttingDown()
          ? { errno: NBD_ESHUTDOWN, message: "the server is shutting down" }
          : checkRequest(request, requestContext);

        if (rejection !== null) {
          if (request.type === NBD_CMD_WRITE) {
            if (request.lengthBytes > NBD_MAX_REQUEST_BYTES) {
              // Too long to consume; answer, then hang up.
              this.#dispatch(request, null, 0, rejection);
              slotHeld = false;
              log({
                level: "warn",
                message: `${rejection.message}; a payload of ${request.lengthBytes} bytes ` +
                  "is too long to skip, closing",
              });
              return "protocol-error";
            }
            if (reader.bufferedBytes < request.lengthBytes) this.#beforeWait();
            await reader.skip(request.lengthBytes);
          }
          this.#dispatch(request, null, 0, rejection);
          slotHeld = false;
          continue;
        }

        const costBytes = request.type === NBD_CMD_READ || request.type === NBD_CMD_WRITE
          ? request.lengthBytes
          : 0;
        // Stop reading while this connection, or the server, holds its limit of bytes.
        if (!this.#bytes.tryAcquire(costBytes)) {
          this.#beforeWait();
          await this.#bytes.acquire(costBytes);
        }
        try {
          if (!this.#context.serverBytes.tryAcquire(costBytes)) {
            this.#beforeWait();
            await this.#context.serverBytes.acquire(costBytes);
          }
        } catch (error) {
          this.#bytes.release(costBytes);
          throw error;
        }
        const readBytes = this.#readBytes(request.type, costBytes);
        if (!this.#reads.tryAcquire(readBytes)) {
          this.#beforeWait();
          await this.#reads.acquire(readBytes);
        }
        let payload: Uint8Array | null = null;
        if (request.type === NBD_CMD_WRITE) {
          if (reader.bufferedBytes < request.lengthBytes) this.#beforeWait();
          payload = this.#take(request.lengthBytes);
          let complete = false;
          try {
            complete = await reader.readInto(payload);
          } finally {
            if (!complete) {
              this.#give(payload);
              this.#releaseBytes(costBytes);
            }
          }
          if (!complete) throw new Deno.errors.UnexpectedEof("write payload missing");
        }
        this.#dispatch(request, payload, costBytes, null);
        slotHeld = false;
      } finally {
        if (slotHeld) this.#slots.release(1);
      }
    }
  }

  /**
   * Before an await that may wait for the client or for other requests:
   * replies held back are written first (they may be what frees the wait).
   */
  #beforeWait(): void {
    this.#context.writer.uncork();
  }

  /** Starts serving one request; takes over its slot and `costBytes`. */
  #dispatch(
    request: NbdRequest,
    payload: Uint8Array | null,
    costBytes: number,
    rejection: RequestRejection | null,
  ): void {
    const promise = this.#serve(request, payload, rejection).finally(() => {
      if (payload !== null) this.#give(payload);
      this.#releaseBytes(costBytes);
      this.#reads.release(this.#readBytes(request.type, costBytes));
      this.#slots.release(1);
      this.#inFlight.delete(promise);
      if (this.#inFlight.size === 0) {
        for (const resolve of this.#drainWaiters.splice(0)) resolve();
      }
    });
    this.#inFlight.add(promise);
  }

  #releaseBytes(costBytes: number): void {
    this.#bytes.release(costBytes);
    this.#context.serverBytes.release(costBytes);
  }

  /** What a request takes of {@linkcode Transmission.#reads}: a read's cost, all of it at most. */
  #readBytes(type: number, costBytes: number): number {
    return type === NBD_CMD_READ ? Math.min(costBytes, this.#reads.capacity) : 0;
  }

  /** Performs one request and writes its reply. Rejects only on a bug. */
  async #serve(
    request: NbdRequest,
    payload: Uint8Array | null,
    rejection: RequestRejection | null,
  ): Promise<void> {
    const { writer, log, counters } = this.#context;
    const startMs = counters?.start(request.type) ?? 0;
    let ok = rejection === null;
    let parts: Uint8Array[];
    /** A pooled reply buffer, given back once the reply is written. */
    const held: Uint8Array[] = [];
    if (rejection !== null) {
      parts = this.#errorReply(request, rejection.errno, rejection.message);
      log({ level: "debug", message: `${errnoName(rejection.errno)}: ${rejection.message}` });
    } else {
      try {
        parts = await this.#perform(request, payload, held);
      } catch (error) {
        const errno = errnoForError(error); // rethrows AssertionError
        ok = false;
        const message = `${
          commandName(request.type)
        } at ${request.offsetBytes}+${request.lengthBytes}: ${errorMessage(error)}`;
        log({ level: errno === NBD_EIO ? "warn" : "debug", message, error });
        parts = this.#errorReply(request, errno, message);
      }
    }
    try {
      if (writer.broken) return;
      await writer.write(parts);
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      // The client went away; nothing more to tell it.
    } finally {
      for (const bytes of held) this.#give(bytes);
      counters?.record(request.type, request.lengthBytes, ok, startMs);
    }
  }

  #take(lengthBytes: number): Uint8Array {
    return this.#context.buffers?.take(lengthBytes) ?? new Uint8Array(lengthBytes);
  }

  #give(bytes: Uint8Array): void {
    this.#context.buffers?.give(bytes);
  }

  async #perform(
    request: NbdRequest,
    payload: Uint8Array | null,
    held: Uint8Array[],
  ): Promise<Uint8Array[]> {
    const exp = this.#context.export;
    const { handle, offsetBytes, lengthBytes, flags } = request;
    const fua = (flags & NBD_CMD_FLAG_FUA) !== 0;
    switch (request.type) {
      case NBD_CMD_READ: {
        // The data is read in place behind room for the reply's header, so
        // that the reply leaves as one buffer: no copy, one write.
        const frame = this.#take(NBD_READ_DATA_OFFSET_BYTES + lengthBytes);
        held.push(frame);
        const into = frame.subarray(NBD_READ_DATA_OFFSET_BYTES);
        const data = await exp.read(offsetBytes, lengthBytes, into);
        if (data.length !== lengthBytes) {
          throw new Error(`export returned ${data.length} bytes for a read of ${lengthBytes}`);
        }
        const headerBytes = this.#context.structuredReplies
          ? NBD_OFFSET_DATA_HEADER_BYTES
          : NBD_SIMPLE_REPLY_BYTES;
        // An export that returned a buffer of its own gets a separate header.
        const inPlace = data === into;
        const start = NBD_READ_DATA_OFFSET_BYTES - headerBytes;
        const header = inPlace
          ? frame.subarray(start, NBD_READ_DATA_OFFSET_BYTES)
          : this.#headers.bytes(headerBytes);
        if (this.#context.structuredReplies) {
          encodeOffsetDataHeader(handle, offsetBytes, lengthBytes, header);
        } else {
          encodeSimpleReply(0, handle, header);
        }
        return inPlace ? [frame.subarray(start)] : [header, data];
      }
      case NBD_CMD_WRITE:
        await exp.write(offsetBytes, payload!, { fua });
        break;
      case NBD_CMD_FLUSH:
        await exp.flush();
        break;
      case NBD_CMD_TRIM:
        await exp.trim(offsetBytes, lengthBytes);
        if (fua) await exp.flush();
        break;
      case NBD_CMD_WRITE_ZEROES:
        await exp.writeZeroes(offsetBytes, lengthBytes, {
          fua,
          noHole: (flags & NBD_CMD_FLAG_NO_HOLE) !== 0,
        });
        break;
      case NBD_CMD_BLOCK_STATUS:
        return [
          encodeBlockStatusReply(
            handle,
            NBD_BASE_ALLOCATION_ID,
            await blockStatusOf(
              exp,
              offsetBytes,
              lengthBytes,
              (flags & NBD_CMD_FLAG_REQ_ONE) !== 0,
            ),
          ),
        ];
      default:
        throw new AssertionError(`unchecked ${commandName(request.type)} dispatched`);
    }
    return [encodeSimpleReply(0, handle, this.#headers.bytes(NBD_SIMPLE_REPLY_BYTES))];
  }

  #errorReply(request: NbdRequest, errno: number, message: string): Uint8Array[] {
    return this.#context.structuredReplies
      ? [encodeStructuredError(request.handle, errno, message)]
      : [encodeSimpleReply(errno, request.handle)];
  }
}

/**
 * The extents of `base:allocation` for a request: the export's answer,
 * clamped to the range, with zero-length extents dropped and neighbours of
 * equal flags merged, at most {@linkcode NBD_BLOCK_STATUS_DESCRIPTORS_MAX}
 * (one with `reqOne`); everything allocated when the export cannot tell. A
 * reply may cover less than the range (the client asks again for the rest),
 * never more, and never nothing.
 */
async function blockStatusOf(
  exp: NbdExport,
  offsetBytes: number,
  lengthBytes: number,
  reqOne: boolean,
): Promise<BlockStatusExtent[]> {
  const answered = exp.blockStatus
    ? await exp.blockStatus(offsetBytes, lengthBytes)
    : [{ lengthBytes, flags: 0 }];
  const limit = reqOne ? 1 : NBD_BLOCK_STATUS_DESCRIPTORS_MAX;
  const extents: BlockStatusExtent[] = [];
  let covered = 0;
  for (const extent of answered) {
    if (covered >= lengthBytes) break;
    const length = Math.min(extent.lengthBytes, lengthBytes - covered);
    if (!(length > 0)) continue;
    covered += length;
    const last = extents.at(-1);
    if (last !== undefined && last.flags === extent.flags) last.lengthBytes += length;
    else if (extents.length < limit) extents.push({ lengthBytes: length, flags: extent.flags });
    else break;
  }
  if (extents.length === 0) throw new Error(`the export reported no extent at ${offsetBytes}`);
  return extents;
}
