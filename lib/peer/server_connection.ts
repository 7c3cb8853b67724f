/**
 * One client connection of the peer server, from accept to close: the hello
 * (bounded in time), then requests read one after another, each performed at
 * once without waiting for earlier ones, and each reply written when its
 * request completes (possibly out of order).
 *
 * Reading stops while the connection is at its limit of requests in flight
 * or of bytes held, and while the server-wide byte budget is exhausted, so
 * memory stays bounded whatever the client sends. A frame that breaks the
 * protocol closes this connection only.
 *
 * @module
 */
import { AssertionError } from "../assert.ts";
import type { Clock } from "../clock.ts";
import { BLOCK_REF_SIZE_BYTES } from "../core/block_ref.ts";
import type { Logger } from "../log.ts";
import { Budget } from "../nbd/budget.ts";
import { ByteReader } from "../nbd/byte_reader.ts";
import { SerialWriter } from "../nbd/serial_writer.ts";
import type { BlockStore } from "../storage/block_store.ts";
import {
  chooseVersion,
  crcListBytes,
  decodeFrameHeader,
  decodeHello,
  decodeNodeUuid,
  decodeRefList,
  encodeBitset,
  encodeCrcList,
  encodeFrameHeader,
  encodeHello,
  encodeMessage,
  type FrameHeader,
  frameHeader,
  HelloStatus,
  opName,
  parseRequest,
  payloadCrc,
  PEER_FLAG_EXPECT_DIGEST,
  PEER_FRAME_HEADER_BYTES,
  PEER_HAS_BLOCKS_BATCH_MAX,
  PEER_HELLO_BYTES,
  PEER_PROTOCOL_VERSION,
  PEER_PROTOCOL_VERSION_MIN,
  PeerOp,
  type PeerRequest,
  PeerStatus,
  requestPayloadBytesMax,
} from "./frame.ts";
import { statusForError, statusName } from "./status.ts";

/** Limits of one connection (see `peer_server.ts` for the defaults). */
export interface ServerConnectionLimits {
  /** Requests read and not yet answered. */
  requestsInFlightMax: number;
  /** Bytes of request payloads and replies held; at least one largest frame. */
  bufferedBytesMax: number;
  /** Milliseconds a client has to send its hello. */
  handshakeTimeoutMs: number;
  /** Milliseconds without a frame, and nothing in flight, before the connection is closed. */
  idleTimeoutMs: number;
  /** Milliseconds one socket write may take (the client is not reading) before closing. */
  writeStallTimeoutMs: number;
}

/** What a connection needs from its server. */
export interface ServerConnectionContext {
  /** The store served. */
  store: BlockStore;
  /** Limits of the connection. */
  limits: ServerConnectionLimits;
  /** The server-wide byte budget. */
  serverBytes: Budget;
  /** This node's uuid, 16 bytes (zero when anonymous). */
  nodeUuid: Uint8Array;
  /** Time and timers. */
  clock: Clock;
  /** True once the server is closing. */
  isShuttingDown(): boolean;
  /** Receives log lines. */
  log: Logger;
}

/** A socket a connection serves: `Deno.Conn`, or anything with these members. */
export interface ServerSocket {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

/** Where a connection is in its life. */
export type ServerConnectionPhase = "handshake" | "serving" | "closing" | "closed";

/** Smallest interval of a connection's idle and stall check, in milliseconds. */
const CHECK_INTERVAL_MS_MIN = 10;

interface Reply {
  header: FrameHeader;
  parts: Uint8Array[];
}

/**
 * Serves one client. {@linkcode ServerConnection.serve} never rejects except
 * on a bug: every network, protocol or store failure ends this connection or
 * becomes a reply status.
 */
export class ServerConnection {
  /** The client's address, for logs. */
  readonly peer: string;
  #socket: ServerSocket;
  #context: ServerConnectionContext;
  #phase: ServerConnectionPhase = "handshake";
  #slots: Budget;
  #bytes: Budget;
  #inFlight = new Set<Promise<void>>();
  #requestIds = new Set<number>();
  #drainWaiters: (() => void)[] = [];
  #socketClosed = false;
  #served: Promise<void> | null = null;
  #checkTimer: number | null = null;
  #lastFrameMs: number;
  #writeStartedMs: number | null = null;

  /** Wraps an accepted socket; {@linkcode ServerConnection.serve} starts serving it. */
  constructor(socket: ServerSocket, peer: string, context: ServerConnectionContext) {
    this.#socket = socket;
    this.peer = peer;
    this.#context = context;
    this.#slots = new Budget(context.limits.requestsInFlightMax);
    this.#bytes = new Budget(context.limits.bufferedBytesMax);
    this.#lastFrameMs = context.clock.nowMs();
  }

  /** Where the connection is in its life. */
  get phase(): ServerConnectionPhase {
    return this.#phase;
  }

  /** Requests read and not yet answered. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Bytes of payloads and replies this connection holds. */
  get bufferedBytes(): number {
    return this.#bytes.used;
  }

  /** Serves the connection to its end; resolves once the socket is closed. */
  serve(): Promise<void> {
    this.#served ??= this.#serve();
    return this.#served;
  }

  /**
   * Ends the connection for a server shutdown: a connection in the hello is
   * closed at once; a serving one answers its requests in flight (new ones
   * get `SHUTTING_DOWN`) for up to `timeoutMs`, then is closed. Resolves
   * when the connection has ended, or after `timeoutMs` more.
   */
  async shutdown(timeoutMs: number): Promise<void> {
    const { clock } = this.#context;
    if (this.#phase === "serving") await withTimeout(clock, this.#drained(), timeoutMs);
    this.#closeSocket();
    if (this.#served !== null) await withTimeout(clock, this.#served, timeoutMs);
  }

  #log(level: "debug" | "info" | "warn" | "error", message: string): void {
    this.#context.log.log(level, `peer ${this.peer}: ${message}`);
  }

  async #serve(): Promise<void> {
    const { clock } = this.#context;
    const reader = new ByteReader(this.#socket);
    const writer = new SerialWriter({
      write: async (bytes) => {
        this.#writeStartedMs = clock.nowMs();
        try {
          return await this.#socket.write(bytes);
        } finally {
          this.#writeStartedMs = null;
        }
      },
    });
    this.#scheduleCheck();
    try {
      if (!(await this.#handshake(reader, writer))) return;
      this.#phase = "serving";
      const end = await this.#loop(reader, writer);
      this.#log("debug", `connection ended: ${end}`);
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      if (!this.#socketClosed && !isDisconnect(error)) {
        this.#log("warn", `connection failed: ${errorText(error)}`);
      }
    } finally {
      this.#phase = "closing";
      while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
      await writer.idle();
      this.#closeSocket();
      writer.fail();
      if (this.#checkTimer !== null) clock.clearTimer(this.#checkTimer);
      this.#checkTimer = null;
      this.#phase = "closed";
    }
  }

  /** Reads the client's hello and answers it; true when the connection may serve. */
  async #handshake(reader: ByteReader, writer: SerialWriter): Promise<boolean> {
    const { store, limits, nodeUuid } = this.#context;
    const bytes = await reader.readView(PEER_HELLO_BYTES);
    if (bytes === null) return false;
    let hello;
    try {
      hello = decodeHello(bytes);
    } catch (error) {
      this.#log("warn", `bad hello: ${errorText(error)}; closing`);
      return false;
    }
    const ours = { versionMin: PEER_PROTOCOL_VERSION_MIN, versionMax: PEER_PROTOCOL_VERSION };
    const version = chooseVersion(ours, hello);
    let status: HelloStatus = HelloStatus.ok;
    if (version === null) status = HelloStatus.versionUnsupported;
    else if (hello.blockSizeBytes !== store.blockSizeBytes) status = HelloStatus.blockSizeMismatch;
    else if (this.#context.isShuttingDown()) status = HelloStatus.shuttingDown;
    await writer.write([encodeHello({
      versionMin: version ?? ours.versionMin,
      versionMax: version ?? ours.versionMax,
      status,
      blockSizeBytes: store.blockSizeBytes,
      requestsInFlightMax: limits.requestsInFlightMax,
      nodeUuid,
    })]);
    const who = decodeNodeUuid(hello.nodeUuid) ?? "anonymous";
    if (status !== HelloStatus.ok) {
      this.#log(
        "warn",
        `refused ${who}: hello status ${status} (versions [${hello.versionMin}, ${hello.versionMax}], ` +
          `block size ${hello.blockSizeBytes}, ours ${store.blockSizeBytes})`,
      );
      return false;
    }
    this.#lastFrameMs = this.#context.clock.nowMs();
    this.#log("debug", `${who} connected, version ${version}`);
    return !this.#socketClosed;
  }

  async #loop(reader: ByteReader, writer: SerialWriter): Promise<string> {
    const { store, serverBytes, clock } = this.#context;
    const blockSizeBytes = store.blockSizeBytes;
    const payloadMax = requestPayloadBytesMax(blockSizeBytes);
    for (;;) {
      // Stop reading the socket while at the limit of requests in flight.
      await this.#slots.acquire(1);
      let slotHeld = true;
      try {
        const bytes = await reader.readView(PEER_FRAME_HEADER_BYTES);
        if (bytes === null) return "eof";
        this.#lastFrameMs = clock.nowMs();
        let header: FrameHeader;
        try {
          header = decodeFrameHeader(bytes);
        } catch (error) {
          this.#log("warn", `${errorText(error)}; closing`);
          return "protocol-error";
        }
        if (header.payloadBytes > payloadMax) {
          this.#log(
            "warn",
            `${opName(header.op)} declares a payload of ${header.payloadBytes} bytes, ` +
              `more than ${payloadMax}; closing`,
          );
          return "protocol-error";
        }
        if (this.#requestIds.has(header.requestId)) {
          this.#log("warn", `request id ${header.requestId} is already in flight; closing`);
          return "protocol-error";
        }
        const parsed = parseRequest(header, blockSizeBytes);
        if (typeof parsed === "string" || this.#context.isShuttingDown()) {
          const refusal = typeof parsed === "string"
            ? { status: PeerStatus.badRequest, message: parsed }
            : { status: PeerStatus.shuttingDown, message: "the server is shutting down" };
          await reader.skip(header.payloadBytes);
          this.#dispatch(header, writer, 0, async () => errorReply(header, refusal));
          slotHeld = false;
          continue;
        }
        const costBytes = header.payloadBytes + replyCostBytes(header, blockSizeBytes);
        // Stop reading while this connection, or the server, holds its limit of bytes.
        await this.#bytes.acquire(costBytes);
        try {
          await serverBytes.acquire(costBytes);
        } catch (error) {
          this.#bytes.release(costBytes);
          throw error;
        }
        let payload: Uint8Array | null;
        try {
          payload = await reader.readCopy(header.payloadBytes);
          if (payload === null) throw new Deno.errors.UnexpectedEof("payload missing");
        } catch (error) {
          this.#releaseBytes(costBytes);
          throw error;
        }
        if (payloadCrc([payload]) !== header.payloadCrc) {
          this.#log("warn", `${opName(header.op)} payload checksum mismatch`);
          this.#releaseBytes(costBytes);
          this.#dispatch(header, writer, 0, async () =>
            errorReply(header, {
              status: PeerStatus.damaged,
              message: "payload checksum mismatch: damaged in transit",
            }));
        } else {
          this.#dispatch(header, writer, costBytes, () => this.#perform(parsed, payload));
        }
        slotHeld = false;
      } finally {
        if (slotHeld) this.#slots.release(1);
      }
    }
  }

  /** Starts serving one request; takes over its slot and `costBytes`. */
  #dispatch(
    header: FrameHeader,
    writer: SerialWriter,
    costBytes: number,
    perform: () => Promise<Reply>,
  ): void {
    this.#requestIds.add(header.requestId);
    const promise = this.#answer(header, writer, perform).finally(() => {
      this.#releaseBytes(costBytes);
      this.#slots.release(1);
      this.#requestIds.delete(header.requestId);
      this.#inFlight.delete(promise);
      if (this.#inFlight.size === 0) {
        for (const resolve of this.#drainWaiters.splice(0)) resolve();
      }
    });
    this.#inFlight.add(promise);
  }

  /** Performs one request and writes its reply. Rejects only on a bug. */
  async #answer(
    header: FrameHeader,
    writer: SerialWriter,
    perform: () => Promise<Reply>,
  ): Promise<void> {
    let reply: Reply;
    try {
      reply = await perform();
    } catch (error) {
      const status = statusForError(error); // rethrows AssertionError
      const message = error instanceof Error ? error.message : String(error);
      this.#log(
        status === PeerStatus.internal ? "warn" : "debug",
        `${opName(header.op)} failed (${statusName(status)}): ${errorText(error)}`,
      );
      reply = errorReply(header, { status, message });
    }
    if (writer.broken) return;
    try {
      await writer.write([encodeFrameHeader(reply.header), ...reply.parts]);
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      // The client went away; nothing more to tell it.
    }
  }

  async #perform(request: PeerRequest, payload: Uint8Array): Promise<Reply> {
    const { store } = this.#context;
    const { header } = request;
    const ref = request.ref!;
    const ok = (fields: Partial<FrameHeader>, parts: Uint8Array[] = []): Reply => ({
      header: frameHeader({
        requestId: header.requestId,
        op: header.op,
        ref: header.ref,
        payloadBytes: parts.reduce((sum, part) => sum + part.length, 0),
        payloadCrc: payloadCrc(parts),
        ...fields,
      }),
      parts,
    });
    switch (header.op) {
      case PeerOp.ping:
        return ok({});
      case PeerOp.read: {
        const { offsetBytes, lengthBytes } = header;
        const read = await store.readBlock(ref, { offsetBytes, lengthBytes });
        if (read.data.length !== lengthBytes) {
          throw new Error(`the store returned ${read.data.length} bytes for ${lengthBytes}`);
        }
        const crcs = encodeCrcList(read.sectorCrcs);
        if (crcs.length !== crcListBytes(store.blockSizeBytes)) {
          throw new Error(`the store returned ${read.sectorCrcs.length} sector CRCs`);
        }
        return ok({ offsetBytes, lengthBytes, arg: read.sectorCrcs.length }, [crcs, read.data]);
      }
      case PeerOp.write:
        await store.writeBlock(ref, payload);
        return ok({});
      case PeerOp.writeRange: {
        const digest = (header.flags & PEER_FLAG_EXPECT_DIGEST) !== 0 ? header.arg : undefined;
        const crcs = await store.writeBlockRange(ref, header.offsetBytes, payload, digest);
        if (crcs.length * 4 !== crcListBytes(store.blockSizeBytes)) {
          throw new Error(`the store returned ${crcs.length} sector CRCs`);
        }
        return ok({ offsetBytes: header.offsetBytes, arg: crcs.length }, [encodeCrcList(crcs)]);
      }
      case PeerOp.delete:
        return ok({ arg: (await store.deleteBlock(ref)) ? 1 : 0 });
      case PeerOp.hasBlocks: {
        const refs = decodeRefList(payload);
        const bits = await Promise.all(refs.map((each) => store.hasBlock(each)));
        return ok({ lengthBytes: refs.length }, [encodeBitset(bits)]);
      }
      case PeerOp.flush:
        await store.flush();
        return ok({});
      default:
        throw new AssertionError(`unchecked ${opName(header.op)} dispatched`);
    }
  }

  #releaseBytes(costBytes: number): void {
    this.#bytes.release(costBytes);
    this.#context.serverBytes.release(costBytes);
  }

  #drained(): Promise<void> {
    if (this.#inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Checks, periodically, for a hello that takes too long, idleness and a stalled client. */
  #scheduleCheck(): void {
    const { clock, limits } = this.#context;
    const intervalMs = Math.max(
      CHECK_INTERVAL_MS_MIN,
      Math.min(limits.handshakeTimeoutMs, limits.idleTimeoutMs, limits.writeStallTimeoutMs) / 4,
    );
    const startedMs = clock.nowMs();
    const check = () => {
      this.#checkTimer = null;
      if (this.#phase === "closed") return;
      const nowMs = clock.nowMs();
      if (this.#phase === "handshake" && nowMs - startedMs >= limits.handshakeTimeoutMs) {
        this.#log("info", "hello timed out; closing");
        this.#closeSocket();
      } else if (
        this.#writeStartedMs !== null && nowMs - this.#writeStartedMs >= limits.writeStallTimeoutMs
      ) {
        this.#log("warn", `the client has not read for ${limits.writeStallTimeoutMs} ms; closing`);
        this.#closeSocket();
      } else if (
        this.#phase === "serving" && this.#inFlight.size === 0 &&
        nowMs - this.#lastFrameMs >= limits.idleTimeoutMs
      ) {
        this.#log("debug", `idle for ${limits.idleTimeoutMs} ms; closing`);
        this.#closeSocket();
      }
      this.#checkTimer = clock.setTimer(intervalMs, check);
    };
    this.#checkTimer = clock.setTimer(intervalMs, check);
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

/**
 * Most bytes one request may hold (its payload and its reply): a connection's
 * and the server's byte budgets must be at least this large.
 */
export function requestCostBytesMax(blockSizeBytes: number): number {
  return Math.max(
    blockSizeBytes + crcListBytes(blockSizeBytes),
    PEER_HAS_BLOCKS_BATCH_MAX * BLOCK_REF_SIZE_BYTES + Math.ceil(PEER_HAS_BLOCKS_BATCH_MAX / 8),
  );
}

/** Bytes a reply to `header` holds beyond its header. */
function replyCostBytes(header: FrameHeader, blockSizeBytes: number): number {
  switch (header.op) {
    case PeerOp.read:
      return header.lengthBytes + crcListBytes(blockSizeBytes);
    case PeerOp.writeRange:
      return crcListBytes(blockSizeBytes);
    case PeerOp.hasBlocks:
      return Math.ceil(header.lengthBytes / 8);
    default:
      return 0;
  }
}

function errorReply(header: FrameHeader, error: { status: PeerStatus; message: string }): Reply {
  const message = encodeMessage(error.message);
  return {
    header: frameHeader({
      requestId: header.requestId,
      op: header.op,
      status: error.status,
      ref: header.ref,
      payloadBytes: message.length,
      payloadCrc: payloadCrc([message]),
    }),
    parts: [message],
  };
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
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
async function withTimeout(
  clock: Clock,
  promise: Promise<unknown>,
  timeoutMs: number,
): Promise<void> {
  let timer: number | undefined;
  try {
    await Promise.race([
      promise.then(() => {}, () => {}),
      new Promise<void>((resolve) => timer = clock.setTimer(timeoutMs, resolve)),
    ]);
  } finally {
    if (timer !== undefined) clock.clearTimer(timer);
  }
}
