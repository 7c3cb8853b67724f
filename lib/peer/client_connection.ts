/**
 * One client connection to a peer: the hello, then requests written as they
 * come (many in flight, each with its own request id) and replies matched
 * by id in whatever order they arrive. A bounded number of requests is in
 * flight; later ones wait for a slot in a bounded queue.
 *
 * Anything the peer sends that breaks the protocol closes the connection:
 * every call on it fails with `PeerUnavailableError`, and the client dials
 * again for the next call.
 *
 * @module
 */
import { assert } from "../assert.ts";
import type { Clock } from "../clock.ts";
import { PeerUnavailableError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { ByteReader, type ByteSource } from "../nbd/byte_reader.ts";
import { type ByteSink, SerialWriter } from "../nbd/serial_writer.ts";
import {
  decodeFrameHeader,
  decodeHello,
  decodeNodeUuid,
  encodeFrameHeader,
  encodeHello,
  type FrameHeader,
  HelloStatus,
  NO_REF,
  opName,
  payloadCrc,
  PEER_ERROR_MESSAGE_BYTES_MAX,
  PEER_FRAME_HEADER_BYTES,
  PEER_HELLO_BYTES,
  PEER_PROTOCOL_VERSION,
  PEER_PROTOCOL_VERSION_MIN,
  PeerOp,
  PeerStatus,
  replyPayloadBytesMax,
} from "./frame.ts";

/** A socket: `Deno.Conn`, or anything with these members. */
export interface ClientSocket extends ByteSource, ByteSink {
  close(): void;
}

/** The reply to one request, as read off the wire. */
export interface ReplyFrame {
  header: FrameHeader;
  /** The payload, in the parts {@linkcode Exchange.parts} asked for (one part for errors). */
  parts: Uint8Array[];
  /** Whether the payload matched its checksum. */
  payloadIntact: boolean;
}

/**
 * One request on a connection, from the caller's side: what reply to
 * expect, and where to deliver it.
 */
export interface Exchange {
  /** The op sent; the reply must echo it. */
  readonly op: number;
  /** The encoded ref sent; the reply must echo it. */
  readonly ref: Uint8Array;
  /** True once the caller gave up (timed out): the reply is read and dropped. */
  readonly done: boolean;
  /**
   * The sizes of the payload parts of a successful reply, or why `header`
   * cannot be the reply (a protocol violation: the connection is closed).
   */
  parts(header: FrameHeader): number[] | string;
  /** Delivers the reply, or the error that ended the connection. Called at most once. */
  complete(result: ReplyFrame | Error): void;
}

/** What a connection needs. */
export interface ClientConnectionOptions {
  /** The peer's address, for messages. */
  address: string;
  /** The cluster block size; the peer must use the same. */
  blockSizeBytes: number;
  /** Most requests this side puts in flight (the peer may allow fewer). */
  requestsInFlightMax: number;
  /** Most calls waiting for a slot; more fail at once. */
  queuedCallsMax: number;
  /** Milliseconds without sending anything before a keepalive `PING`. */
  keepaliveIntervalMs: number;
  /** Milliseconds a keepalive may go unanswered before the connection is closed. */
  pingTimeoutMs: number;
  /**
   * Milliseconds with requests in flight and nothing received before a
   * `PING` checks that the peer is still there (a slow request, such as a
   * flush, does not delay its answer).
   */
  stallProbeMs: number;
  /** This node's uuid, 16 bytes (zero when anonymous). */
  nodeUuid: Uint8Array;
  /** Time and timers. */
  clock: Clock;
  /** Receives log lines. */
  log: Logger;
}

interface Sent {
  exchange: Exchange;
  sentAtMs: number;
  /** Frames received before this one was sent. */
  framesBefore: number;
}

/** A connection to one peer, after a successful hello. */
export class ClientConnection {
  /** The peer's node uuid, or null when it is anonymous. */
  readonly remoteNodeUuid: string | null;
  /** Requests in flight at most: the smaller of both sides' limits. */
  readonly requestsInFlightMax: number;
  #socket: ClientSocket;
  #reader: ByteReader;
  #writer: SerialWriter;
  #options: ClientConnectionOptions;
  #pending = new Map<number, Sent>();
  #nextRequestId = 1;
  #freeSlots: number;
  #slotWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  #error: Error | null = null;
  #framesReceived = 0;
  #lastSendMs: number;
  /** When the last frame arrived, or the first request after a quiet spell was sent. */
  #lastHeardMs: number;
  #pinging = false;
  #stall: Error | null = null;
  #keepaliveTimer: number | null = null;

  private constructor(
    socket: ClientSocket,
    reader: ByteReader,
    options: ClientConnectionOptions,
    remoteNodeUuid: string | null,
    requestsInFlightMax: number,
  ) {
    this.#socket = socket;
    this.#reader = reader;
    this.#writer = new SerialWriter(socket);
    this.#options = options;
    this.remoteNodeUuid = remoteNodeUuid;
    this.requestsInFlightMax = requestsInFlightMax;
    this.#freeSlots = requestsInFlightMax;
    this.#lastSendMs = options.clock.nowMs();
    this.#lastHeardMs = this.#lastSendMs;
    void this.#readLoop();
    this.#scheduleKeepalive();
  }

  /**
   * Says hello on `socket` and checks the peer's answer. The caller bounds
   * the time (closing the socket makes this reject).
   *
   * @throws {PeerUnavailableError} when the peer refuses, or is not a peer
   * protocol server, or the socket fails. The socket is closed then.
   */
  static async open(
    socket: ClientSocket,
    options: ClientConnectionOptions,
  ): Promise<ClientConnection> {
    const { address } = options;
    const reader = new ByteReader(socket);
    try {
      const bytes = encodeHello({
        versionMin: PEER_PROTOCOL_VERSION_MIN,
        versionMax: PEER_PROTOCOL_VERSION,
        status: HelloStatus.ok,
        blockSizeBytes: options.blockSizeBytes,
        requestsInFlightMax: options.requestsInFlightMax,
        nodeUuid: options.nodeUuid,
      });
      for (let at = 0; at < bytes.length;) at += await socket.write(bytes.subarray(at));
      const reply = await reader.readView(PEER_HELLO_BYTES);
      if (reply === null) throw new Error("the peer closed the connection during the hello");
      const hello = decodeHello(reply);
      switch (hello.status) {
        case HelloStatus.ok:
          break;
        case HelloStatus.versionUnsupported:
          throw new Error(
            `the peer speaks protocol versions [${hello.versionMin}, ${hello.versionMax}], ` +
              `this node [${PEER_PROTOCOL_VERSION_MIN}, ${PEER_PROTOCOL_VERSION}]`,
          );
        case HelloStatus.blockSizeMismatch:
          throw new Error(
            `the peer uses blocks of ${hello.blockSizeBytes} bytes, this node ` +
              `${options.blockSizeBytes}: they are not in the same cluster`,
          );
        case HelloStatus.busy:
          throw new Error("the peer is at its connection limit");
        case HelloStatus.shuttingDown:
          throw new Error("the peer is shutting down");
        default:
          throw new Error(`the peer refused the connection (hello status ${hello.status})`);
      }
      const version = hello.versionMax;
      if (
        hello.versionMin !== version || version < PEER_PROTOCOL_VERSION_MIN ||
        version > PEER_PROTOCOL_VERSION
      ) {
        throw new SyntaxError(`the peer chose version range [${hello.versionMin}, ${version}]`);
      }
      if (hello.blockSizeBytes !== options.blockSizeBytes) {
        throw new SyntaxError(`the peer accepted a block size of ${hello.blockSizeBytes}`);
      }
      if (hello.requestsInFlightMax < 1) {
        throw new SyntaxError("the peer allows no request in flight");
      }
      return new ClientConnection(
        socket,
        reader,
        options,
        decodeNodeUuid(hello.nodeUuid),
        Math.min(options.requestsInFlightMax, hello.requestsInFlightMax),
      );
    } catch (error) {
      try {
        socket.close();
      } catch {
        // Already closed.
      }
      throw new PeerUnavailableError(
        `Cannot connect to ${address}: ${error instanceof Error ? error.message : error}`,
        { cause: error },
      );
    }
  }

  /** Whether the connection has ended. */
  get closed(): boolean {
    return this.#error !== null;
  }

  /**
   * Why the connection ended when the peer stopped answering (a stalled
   * request, an unanswered `PING`): the peer may be cut off. Null otherwise.
   */
  get stall(): Error | null {
    return this.#stall;
  }

  /** Requests sent and not yet answered, including those whose caller gave up. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Takes a slot for one request, waiting (first come, first served) while
   * all are taken.
   *
   * @throws {PeerUnavailableError} when the connection is closed (or closes
   * while waiting), or too many calls already wait.
   */
  acquireSlot(): Promise<void> {
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#freeSlots > 0 && this.#slotWaiters.length === 0) {
      this.#freeSlots--;
      return Promise.resolve();
    }
    if (this.#slotWaiters.length >= this.#options.queuedCallsMax) {
      return Promise.reject(
        new PeerUnavailableError(
          `${this.#options.address}: ${this.#slotWaiters.length} calls already wait for a slot`,
        ),
      );
    }
    return new Promise((resolve, reject) => this.#slotWaiters.push({ resolve, reject }));
  }

  /** Gives back a slot taken with {@linkcode acquireSlot} that was not used to send. */
  releaseSlot(): void {
    if (this.#error !== null) return;
    const waiter = this.#slotWaiters.shift();
    if (waiter !== undefined) waiter.resolve();
    else this.#freeSlots++;
    assert(this.#freeSlots <= this.requestsInFlightMax, "slot released twice");
  }

  /**
   * Sends one request, using a slot taken before. The header's request id
   * is assigned here; the slot is given back when the reply arrives.
   */
  send(exchange: Exchange, header: Omit<FrameHeader, "requestId">, payload: Uint8Array[]): void {
    if (this.#error !== null) {
      exchange.complete(this.#error);
      return;
    }
    let requestId = this.#nextRequestId;
    while (this.#pending.has(requestId)) requestId = (requestId + 1) >>> 0;
    this.#nextRequestId = (requestId + 1) >>> 0;
    const nowMs = this.#options.clock.nowMs();
    if (this.#pending.size === 0) this.#lastHeardMs = nowMs;
    this.#pending.set(requestId, { exchange, sentAtMs: nowMs, framesBefore: this.#framesReceived });
    this.#lastSendMs = nowMs;
    this.#writer.write([encodeFrameHeader({ ...header, requestId }), ...payload]).catch((error) =>
      this.close(
        new PeerUnavailableError(`${this.#options.address}: sending failed: ${error}`, {
          cause: error,
        }),
      )
    );
  }

  /**
   * Called when the caller of `exchange` gave up waiting. A connection on
   * which nothing arrived since that request was sent is stalled: it is
   * closed, so the next call dials again.
   */
  gaveUp(exchange: Exchange): void {
    for (const sent of this.#pending.values()) {
      if (sent.exchange !== exchange) continue;
      if (this.#framesReceived === sent.framesBefore) {
        this.#stalled(
          new PeerUnavailableError(
            `${this.#options.address}: nothing received for ${
              this.#options.clock.nowMs() - sent.sentAtMs
            } ms; the connection is stalled`,
          ),
        );
      }
      return;
    }
  }

  /** Closes the connection because the peer stopped answering. */
  #stalled(error: Error): void {
    if (this.#error === null) this.#stall = error;
    this.close(error);
  }

  /** Closes the connection; every request on it and every waiter fails with `error`. */
  close(error: Error = new PeerUnavailableError(`${this.#options.address}: connection closed`)) {
    if (this.#error !== null) return;
    this.#error = error;
    if (this.#keepaliveTimer !== null) this.#options.clock.clearTimer(this.#keepaliveTimer);
    this.#keepaliveTimer = null;
    try {
      this.#socket.close();
    } catch {
      // Already closed.
    }
    this.#writer.fail(error);
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const { exchange } of pending) if (!exchange.done) exchange.complete(error);
    for (const waiter of this.#slotWaiters.splice(0)) waiter.reject(error);
  }

  async #readLoop(): Promise<void> {
    const { address, blockSizeBytes } = this.#options;
    const payloadMax = replyPayloadBytesMax(blockSizeBytes);
    let failure: Error;
    try {
      for (;;) {
        const bytes = await this.#reader.readView(PEER_FRAME_HEADER_BYTES);
        if (bytes === null) {
          failure = new PeerUnavailableError(`${address} closed the connection`);
          break;
        }
        this.#framesReceived++;
        this.#lastHeardMs = this.#options.clock.nowMs();
        const header = decodeFrameHeader(bytes);
        const sent = this.#pending.get(header.requestId);
        const name = opName(header.op);
        if (sent === undefined) {
          throw new SyntaxError(`reply to unknown request ${header.requestId}`);
        }
        const { exchange } = sent;
        if (header.op !== exchange.op || !equalBytes(header.ref, exchange.ref)) {
          throw new SyntaxError(`${name} reply to a ${opName(exchange.op)} request`);
        }
        if (header.payloadBytes > payloadMax) {
          throw new SyntaxError(`${name} reply of ${header.payloadBytes} bytes`);
        }
        let sizes: number[] | string;
        if (header.status !== PeerStatus.ok) {
          sizes = header.payloadBytes <= PEER_ERROR_MESSAGE_BYTES_MAX
            ? [header.payloadBytes]
            : `error message of ${header.payloadBytes} bytes`;
        } else {
          sizes = exchange.parts(header);
        }
        if (typeof sizes === "string") throw new SyntaxError(`${name} reply: ${sizes}`);
        assert(sizes.reduce((a, b) => a + b, 0) === header.payloadBytes, "parts must add up");
        if (exchange.done) {
          await this.#reader.skip(header.payloadBytes);
          this.#answered(header.requestId);
          continue;
        }
        const parts: Uint8Array[] = [];
        for (const size of sizes) {
          const part = await this.#reader.readCopy(size);
          if (part === null) throw new Deno.errors.UnexpectedEof("reply payload missing");
          parts.push(part);
        }
        this.#answered(header.requestId);
        exchange.complete({
          header,
          parts,
          payloadIntact: payloadCrc(parts) === header.payloadCrc,
        });
      }
    } catch (error) {
      failure = error instanceof PeerUnavailableError ? error : new PeerUnavailableError(
        error instanceof SyntaxError
          ? `${address} broke the protocol: ${error.message}`
          : `${address}: connection lost: ${error instanceof Error ? error.message : error}`,
        { cause: error },
      );
      if (error instanceof SyntaxError) this.#options.log.log("warn", failure.message);
    }
    this.close(failure);
  }

  #answered(requestId: number): void {
    this.#pending.delete(requestId);
    this.releaseSlot();
  }

  /**
   * Sends a `PING` when nothing was sent for a while, or when requests are in
   * flight and nothing arrived for a while; closes the connection if it goes
   * unanswered.
   */
  #scheduleKeepalive(): void {
    const { clock, keepaliveIntervalMs, pingTimeoutMs, stallProbeMs, address } = this.#options;
    const tick = () => {
      this.#keepaliveTimer = null;
      if (this.#error !== null) return;
      const nowMs = clock.nowMs();
      const quietMs = nowMs - this.#lastSendMs;
      const silentMs = this.#pending.size > 0 ? nowMs - this.#lastHeardMs : 0;
      const due = quietMs >= keepaliveIntervalMs || silentMs >= stallProbeMs;
      if (due && !this.#pinging && this.#freeSlots > 0 && this.#slotWaiters.length === 0) {
        this.#freeSlots--;
        this.#pinging = true;
        let done = false;
        const framesBefore = this.#framesReceived;
        const timer = clock.setTimer(pingTimeoutMs, () => {
          if (done) return;
          done = true;
          this.#pinging = false;
          // Replies still arriving (the answer queued behind them): the peer is there.
          if (this.#framesReceived !== framesBefore) return;
          this.#stalled(
            new PeerUnavailableError(
              `${address}: keepalive unanswered for ${pingTimeoutMs} ms${
                silentMs >= stallProbeMs ? ` (nothing received for ${silentMs} ms before it)` : ""
              }`,
            ),
          );
        });
        const exchange: Exchange = {
          op: PeerOp.ping,
          ref: NO_REF,
          get done() {
            return done;
          },
          parts: (header) => header.payloadBytes === 0 ? [] : "payload in a PING reply",
          complete: () => {
            done = true;
            this.#pinging = false;
            clock.clearTimer(timer);
          },
        };
        this.send(exchange, {
          op: PeerOp.ping,
          flags: 0,
          status: 0,
          reserved: 0,
          ref: exchange.ref,
          offsetBytes: 0,
          lengthBytes: 0,
          arg: 0,
          payloadBytes: 0,
          payloadCrc: 0,
        }, []);
      }
      const untilKeepalive = quietMs >= keepaliveIntervalMs
        ? keepaliveIntervalMs
        : keepaliveIntervalMs - quietMs;
      const untilProbe = silentMs > 0 && silentMs < stallProbeMs
        ? stallProbeMs - silentMs
        : stallProbeMs;
      this.#keepaliveTimer = clock.setTimer(Math.min(untilKeepalive, untilProbe), tick);
    };
    this.#keepaliveTimer = clock.setTimer(Math.min(keepaliveIntervalMs, stallProbeMs), tick);
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
