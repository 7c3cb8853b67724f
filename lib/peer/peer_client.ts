/**
 * The peer protocol client: a {@linkcode PeerClient} of one remote node over
 * one pipelined TCP connection, dialled lazily and again after failures.
 *
 * Every call has a deadline (a default per op, or `options.timeoutMs`)
 * covering dialling, waiting for a slot and the reply. Arguments are
 * checked before anything is sent. Read replies are verified against the
 * sector CRCs the peer sent: a damaged or lying reply is a
 * `BlockCorruptError`, never wrong bytes.
 *
 * @module
 */
import { type Clock, SystemClock } from "../clock.ts";
import type { BlockRef } from "../core/block_ref.ts";
import { BlockCorruptError, PeerUnavailableError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import type { BlockRange, BlockRead } from "../storage/block_store.ts";
import { parsePeerAddress } from "./address.ts";
import {
  ClientConnection,
  type ClientSocket,
  type Exchange,
  type ReplyFrame,
} from "./client_connection.ts";
import {
  checkBlockSize,
  crcListBytes,
  decodeBitset,
  decodeCrcList,
  decodeMessage,
  encodeNodeUuid,
  encodeRefList,
  type FrameHeader,
  NO_REF,
  opName,
  payloadCrc,
  PEER_FLAG_EXPECT_DIGEST,
  PEER_HAS_BLOCKS_BATCH_MAX,
  PeerOp,
  PeerStatus,
} from "./frame.ts";
import {
  checkCallTimeout,
  checkReadRange,
  checkWriteLength,
  checkWriteRange,
  verifyRead,
  verifyWrittenSectors,
} from "./client_checks.ts";
import { errorForStatus } from "./status.ts";
import type { PeerCallOptions, PeerClient } from "./transport.ts";

/** Default most requests in flight on the connection (the server may allow fewer). */
export const PEER_CLIENT_REQUESTS_IN_FLIGHT_MAX = 64;
/** Default most calls waiting for a slot; more fail at once with `PeerUnavailableError`. */
export const PEER_CLIENT_QUEUED_CALLS_MAX = 4096;
/** Default milliseconds to connect and finish the hello (the original's 2 s dial timeout). */
export const PEER_DIAL_TIMEOUT_MS = 2_000;
/**
 * Default milliseconds for a read. The original's 500 ms is too tight for a
 * 512 KiB block behind a queue of others on a loaded node; 2 s still fails
 * over to another replica quickly.
 */
export const PEER_READ_TIMEOUT_MS = 2_000;
/** Default milliseconds for a block write or a range write (the original's `PutBlock`: 2 s). */
export const PEER_WRITE_TIMEOUT_MS = 5_000;
/** Default milliseconds for a delete. */
export const PEER_DELETE_TIMEOUT_MS = 2_000;
/** Default milliseconds for one `HAS_BLOCKS` batch (the original's `RebalanceCheck`: 5 s). */
export const PEER_HAS_BLOCKS_TIMEOUT_MS = 5_000;
/** Default milliseconds for a flush: an fsync of a busy disk can take seconds. */
export const PEER_FLUSH_TIMEOUT_MS = 10_000;
/** Default milliseconds without sending before a keepalive `PING` (the original: 2 s). */
export const PEER_KEEPALIVE_INTERVAL_MS = 10_000;
/** Default milliseconds a keepalive may go unanswered before the connection is dropped. */
export const PEER_PING_TIMEOUT_MS = 2_000;
/**
 * Default milliseconds with calls in flight and nothing received before a
 * `PING` checks the peer: a peer cut off by the network is found out in
 * this plus {@linkcode PEER_PING_TIMEOUT_MS}, not at the end of a long call
 * (a flush waits up to 10 s or more). The peer answers a `PING` at once
 * even while it works on slow requests.
 */
export const PEER_STALL_PROBE_MS = 2_000;
/**
 * Milliseconds before the first redial after a failed dial; calls fail at
 * once meanwhile, and while that redial is in progress.
 */
export const PEER_RECONNECT_BACKOFF_MIN_MS = 50;
/** Longest pause between dials to an unreachable peer (the pause doubles up to it). */
export const PEER_RECONNECT_BACKOFF_MAX_MS = 2_000;

/** The limits and timeouts of a {@linkcode TcpPeerClient}; every field has a default above. */
export interface PeerClientLimits {
  /** Requests in flight on the connection (the server's own limit may be lower). */
  requestsInFlightMax: number;
  /** Calls waiting for a slot; more fail at once. */
  queuedCallsMax: number;
  /** Milliseconds to connect and finish the hello. */
  dialTimeoutMs: number;
  /** Default milliseconds of `readBlock()`. */
  readTimeoutMs: number;
  /** Default milliseconds of `writeBlock()` and `writeBlockRange()`. */
  writeTimeoutMs: number;
  /** Default milliseconds of `deleteBlock()`. */
  deleteTimeoutMs: number;
  /** Default milliseconds of each batch of `hasBlocks()`. */
  hasBlocksTimeoutMs: number;
  /** Default milliseconds of `flush()`. */
  flushTimeoutMs: number;
  /** Milliseconds without sending before a keepalive `PING`. */
  keepaliveIntervalMs: number;
  /** Milliseconds a keepalive (or `ping()`) may go unanswered. */
  pingTimeoutMs: number;
  /** Milliseconds with calls in flight and nothing received before a `PING` checks the peer. */
  stallProbeMs: number;
  /** First pause after a failed dial, during which calls fail at once. */
  reconnectBackoffMinMs: number;
  /** Longest pause between dials (the pause doubles after each failure). */
  reconnectBackoffMaxMs: number;
}

/** Options of a {@linkcode TcpPeerClient}. */
export interface TcpPeerClientOptions {
  /** `tdp://host:port` of the peer. */
  address: string;
  /** The cluster block size; a peer with another refuses the connection. */
  blockSizeBytes: number;
  /** This node's uuid, sent in the hello. Default: anonymous. */
  nodeUuid?: string;
  /** Time and timers. Default: the system clock. */
  clock?: Clock;
  /** Receives log lines. Default: none. */
  logger?: Logger;
  /** Overrides of the default limits. */
  limits?: Partial<PeerClientLimits>;
  /** Opens the TCP connection; tests replace it. Default: `Deno.connect`. */
  connect?: (hostname: string, port: number) => Promise<ClientSocket>;
}

/** The default limits of a client. */
export function peerClientLimits(overrides: Partial<PeerClientLimits> = {}): PeerClientLimits {
  const limits: PeerClientLimits = {
    requestsInFlightMax: PEER_CLIENT_REQUESTS_IN_FLIGHT_MAX,
    queuedCallsMax: PEER_CLIENT_QUEUED_CALLS_MAX,
    dialTimeoutMs: PEER_DIAL_TIMEOUT_MS,
    readTimeoutMs: PEER_READ_TIMEOUT_MS,
    writeTimeoutMs: PEER_WRITE_TIMEOUT_MS,
    deleteTimeoutMs: PEER_DELETE_TIMEOUT_MS,
    hasBlocksTimeoutMs: PEER_HAS_BLOCKS_TIMEOUT_MS,
    flushTimeoutMs: PEER_FLUSH_TIMEOUT_MS,
    keepaliveIntervalMs: PEER_KEEPALIVE_INTERVAL_MS,
    pingTimeoutMs: PEER_PING_TIMEOUT_MS,
    stallProbeMs: PEER_STALL_PROBE_MS,
    reconnectBackoffMinMs: PEER_RECONNECT_BACKOFF_MIN_MS,
    reconnectBackoffMaxMs: PEER_RECONNECT_BACKOFF_MAX_MS,
    ...overrides,
  };
  for (const [key, value] of Object.entries(limits)) {
    if (!(Number.isSafeInteger(value) && value > 0)) {
      throw new RangeError(
        `Cannot use peer client limit ${key}: ${value} is not a positive integer`,
      );
    }
  }
  return limits;
}

/** How to ask for something and what to make of the answer. */
interface Request<T> {
  op: PeerOp;
  ref: Uint8Array;
  header?: Partial<FrameHeader>;
  payload?: Uint8Array[];
  timeoutMs: number;
  /** Sizes of the payload parts of a successful reply, or why the header is wrong. */
  parts(header: FrameHeader): number[] | string;
  /** The result of a successful, intact reply; a `SyntaxError` is a protocol violation. */
  decode(parts: Uint8Array[], header: FrameHeader): T;
  /** The error of a successful reply whose payload is damaged. */
  damaged(): Error;
}

/**
 * A client of one peer over TCP.
 *
 * @example Usage
 * ```ts ignore
 * import { TcpPeerClient } from "./peer_client.ts";
 * const client = new TcpPeerClient({ address: "tdp://10.0.0.5:40000", blockSizeBytes: 512 * 1024 });
 * const { data } = await client.readBlock(ref, { offsetBytes: 0, lengthBytes: 4096 });
 * await client.close();
 * ```
 */
export class TcpPeerClient implements PeerClient {
  /** The address dialled. */
  readonly address: string;
  /** The cluster block size. */
  readonly blockSizeBytes: number;
  #hostname: string;
  #port: number;
  #nodeUuid: Uint8Array;
  #clock: Clock;
  #log: Logger;
  #limits: PeerClientLimits;
  #connect: (hostname: string, port: number) => Promise<ClientSocket>;
  #connection: ClientConnection | null = null;
  #dialing: Promise<ClientConnection> | null = null;
  #abortDial: ((error: Error) => void) | null = null;
  #backoffMs = 0;
  #backoffUntilMs = 0;
  #lastDialError: Error | null = null;
  #calls = new Set<(error: Error) => void>();
  #closed = false;

  /**
   * Creates a client; nothing is dialled until the first call.
   *
   * @throws {TypeError} on a malformed address or node uuid.
   * @throws {RangeError} on port 0, a bad block size or a bad limit.
   */
  constructor(options: TcpPeerClientOptions) {
    const { hostname, port } = parsePeerAddress(options.address);
    checkBlockSize(options.blockSizeBytes);
    this.address = options.address;
    this.blockSizeBytes = options.blockSizeBytes;
    this.#hostname = hostname;
    this.#port = port;
    this.#nodeUuid = encodeNodeUuid(options.nodeUuid);
    this.#clock = options.clock ?? new SystemClock();
    this.#log = options.logger ?? silentLogger;
    this.#limits = peerClientLimits(options.limits);
    this.#connect = options.connect ?? (async (hostname, port) => {
      const conn = await Deno.connect({ hostname, port, transport: "tcp" });
      try {
        conn.setNoDelay(true);
      } catch {
        // Gone already: the hello will fail.
      }
      return conn;
    });
  }

  /** The peer's node uuid once connected (null when anonymous or not connected). */
  get remoteNodeUuid(): string | null {
    return this.#connection?.remoteNodeUuid ?? null;
  }

  /** Requests in flight on the connection (including abandoned ones not yet answered). */
  get inFlight(): number {
    return this.#connection?.inFlight ?? 0;
  }

  /**
   * Reads a whole block or `range` of it. The peer sends whole sectors; each
   * is checked against the block's sector CRCs before any byte is returned.
   *
   * @throws {BlockNotFoundError} when the peer does not store the block.
   * @throws {BlockCorruptError} when the peer's copy, or the reply, is damaged.
   * @throws {PeerUnavailableError} on a timeout or a connection failure.
   * @throws {RangeError} when `range` is outside the block (nothing is sent).
   */
  async readBlock(
    ref: BlockRef,
    range?: BlockRange,
    options?: PeerCallOptions,
  ): Promise<BlockRead> {
    const timeoutMs = this.#timeout(options, this.#limits.readTimeoutMs);
    const { wanted, aligned } = checkReadRange(this.blockSizeBytes, range);
    const crcBytes = crcListBytes(this.blockSizeBytes);
    return await this.#call<BlockRead>({
      op: PeerOp.read,
      ref: ref.toBytes(),
      header: { offsetBytes: aligned.offsetBytes, lengthBytes: aligned.lengthBytes },
      timeoutMs,
      parts: (header) =>
        header.offsetBytes !== aligned.offsetBytes || header.lengthBytes !== aligned.lengthBytes ||
          header.arg !== crcBytes / 4 || header.payloadBytes !== crcBytes + aligned.lengthBytes
          ? `bytes [${header.offsetBytes}, +${header.lengthBytes}) with ${header.arg} CRCs in ` +
            `${header.payloadBytes} bytes, expected [${aligned.offsetBytes}, +${aligned.lengthBytes})`
          : [crcBytes, aligned.lengthBytes],
      decode: ([crcPart, data]) =>
        verifyRead(
          this.address,
          ref,
          this.blockSizeBytes,
          wanted,
          aligned,
          data!,
          decodeCrcList(crcPart!),
        ),
      damaged: () =>
        new BlockCorruptError(`${this.address}: the reply to a read of ${ref} was damaged`),
    });
  }

  /**
   * Stores a whole block (zero-padded) on the peer.
   *
   * @throws {OutOfSpaceError} when the peer's store is full.
   * @throws {PeerUnavailableError} on a timeout, a connection failure or a
   * payload damaged in transit (nothing was stored then).
   * @throws {RangeError} when `data` is longer than a block (nothing is sent).
   */
  async writeBlock(ref: BlockRef, data: Uint8Array, options?: PeerCallOptions): Promise<void> {
    const timeoutMs = this.#timeout(options, this.#limits.writeTimeoutMs);
    checkWriteLength(this.blockSizeBytes, ref, data.length);
    return await this.#call<void>({
      op: PeerOp.write,
      ref: ref.toBytes(),
      payload: [data],
      timeoutMs,
      parts: emptyReply,
      decode: () => {},
      damaged: () => this.#damaged(PeerOp.write),
    });
  }

  /**
   * Overwrites a range of a block the peer stores; returns its new sector
   * CRCs, checked against the data sent for every sector the data covers.
   *
   * @throws {BlockNotFoundError} when the peer does not store the block.
   * @throws {BlockCorruptError} when the block does not match `expectDigest`,
   * an edge sector is corrupt, or the returned CRCs do not match the data.
   * @throws {PeerUnavailableError} on a timeout or a connection failure.
   * @throws {RangeError} on a range outside the block or a digest that is not a u32.
   */
  async writeBlockRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
    options?: PeerCallOptions,
  ): Promise<Uint32Array> {
    const timeoutMs = this.#timeout(options, this.#limits.writeTimeoutMs);
    checkWriteRange(this.blockSizeBytes, offsetBytes, data.length, expectDigest);
    const crcBytes = crcListBytes(this.blockSizeBytes);
    return await this.#call<Uint32Array>({
      op: PeerOp.writeRange,
      ref: ref.toBytes(),
      header: {
        offsetBytes,
        flags: expectDigest === undefined ? 0 : PEER_FLAG_EXPECT_DIGEST,
        arg: expectDigest ?? 0,
      },
      payload: [data],
      timeoutMs,
      parts: (header) =>
        header.offsetBytes !== offsetBytes || header.arg !== crcBytes / 4 ||
          header.payloadBytes !== crcBytes || header.lengthBytes !== 0
          ? `${header.arg} CRCs in ${header.payloadBytes} bytes at ${header.offsetBytes}`
          : [crcBytes],
      decode: ([crcPart]) => {
        const crcs = decodeCrcList(crcPart!);
        verifyWrittenSectors(this.address, ref, this.blockSizeBytes, offsetBytes, data, crcs);
        return crcs;
      },
      damaged: () => this.#damaged(PeerOp.writeRange),
    });
  }

  /** Deletes a block on the peer; resolves to whether it was stored. */
  async deleteBlock(ref: BlockRef, options?: PeerCallOptions): Promise<boolean> {
    const timeoutMs = this.#timeout(options, this.#limits.deleteTimeoutMs);
    return await this.#call<boolean>({
      op: PeerOp.delete,
      ref: ref.toBytes(),
      timeoutMs,
      parts: (header) => header.arg > 1 ? `deleted flag ${header.arg}` : emptyReply(header),
      decode: (_, header) => header.arg === 1,
      damaged: () => this.#damaged(PeerOp.delete),
    });
  }

  /** Which of `refs` the peer stores, in order; long lists go in batches, concurrently. */
  async hasBlocks(refs: BlockRef[], options?: PeerCallOptions): Promise<boolean[]> {
    const timeoutMs = this.#timeout(options, this.#limits.hasBlocksTimeoutMs);
    const batches: Promise<boolean[]>[] = [];
    for (let start = 0; start < refs.length; start += PEER_HAS_BLOCKS_BATCH_MAX) {
      const batch = refs.slice(start, start + PEER_HAS_BLOCKS_BATCH_MAX);
      const count = batch.length;
      batches.push(this.#call<boolean[]>({
        op: PeerOp.hasBlocks,
        ref: NO_REF,
        header: { lengthBytes: count },
        payload: [encodeRefList(batch)],
        timeoutMs,
        parts: (header) =>
          header.lengthBytes !== count || header.payloadBytes !== Math.ceil(count / 8)
            ? `${header.lengthBytes} answers in ${header.payloadBytes} bytes for ${count} refs`
            : [header.payloadBytes],
        decode: ([bits]) => decodeBitset(bits!, count),
        damaged: () => this.#damaged(PeerOp.hasBlocks),
      }));
    }
    return (await Promise.all(batches)).flat();
  }

  /** Makes every write the peer acknowledged so far durable. */
  async flush(options?: PeerCallOptions): Promise<void> {
    const timeoutMs = this.#timeout(options, this.#limits.flushTimeoutMs);
    return await this.#call<void>({
      op: PeerOp.flush,
      ref: NO_REF,
      timeoutMs,
      parts: emptyReply,
      decode: () => {},
      damaged: () => this.#damaged(PeerOp.flush),
    });
  }

  /** Sends a keepalive `PING` and waits for the answer: a cheap liveness check. */
  async ping(options?: PeerCallOptions): Promise<void> {
    const timeoutMs = this.#timeout(options, this.#limits.pingTimeoutMs);
    return await this.#call<void>({
      op: PeerOp.ping,
      ref: NO_REF,
      timeoutMs,
      parts: emptyReply,
      decode: () => {},
      damaged: () => this.#damaged(PeerOp.ping),
    });
  }

  /** Closes the connection; pending and later calls fail with `PeerUnavailableError`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const error = new PeerUnavailableError(`${this.address}: the client was closed`);
    for (const fail of [...this.#calls]) fail(error);
    this.#connection?.close(error);
    this.#connection = null;
    this.#abortDial?.(error);
    if (this.#dialing !== null) await this.#dialing.catch(() => {});
  }

  #timeout(options: PeerCallOptions | undefined, defaultMs: number): number {
    return checkCallTimeout(options?.timeoutMs ?? defaultMs);
  }

  #damaged(op: PeerOp): Error {
    return new PeerUnavailableError(`${this.address}: the reply to ${opName(op)} was damaged`);
  }

  /** Runs one request to its end: dial if needed, wait for a slot, send, decode the reply. */
  #call<T>(request: Request<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new PeerUnavailableError(`${this.address}: the client is closed`));
    }
    const clock = this.#clock;
    return new Promise<T>((resolve, reject) => {
      let done = false;
      let connection: ClientConnection | null = null;
      let sent = false;
      const finish = (error: Error | null, value?: T) => {
        if (done) return;
        done = true;
        clock.clearTimer(timer);
        this.#calls.delete(fail);
        if (error === null) resolve(value as T);
        else reject(error);
      };
      const fail = (error: Error) => finish(error);
      const timer = clock.setTimer(request.timeoutMs, () => {
        finish(
          new PeerUnavailableError(
            `${this.address} did not answer ${opName(request.op)} within ${request.timeoutMs} ms`,
          ),
        );
        if (sent) connection?.gaveUp(exchange);
      });
      this.#calls.add(fail);
      const exchange: Exchange = {
        op: request.op,
        ref: request.ref,
        get done() {
          return done;
        },
        parts: request.parts,
        complete: (result) => {
          if (result instanceof Error) return fail(result);
          try {
            finish(null, this.#decode(request, result));
          } catch (error) {
            if (error instanceof SyntaxError) {
              connection?.close(
                new PeerUnavailableError(`${this.address} broke the protocol: ${error.message}`),
              );
            }
            fail(
              error instanceof SyntaxError || !(error instanceof Error)
                ? new PeerUnavailableError(`${this.address} sent a bad reply: ${error}`, {
                  cause: error,
                })
                : error,
            );
          }
        },
      };
      void (async () => {
        try {
          connection = await this.#connected();
          if (done) return;
          await connection.acquireSlot();
          if (done) {
            connection.releaseSlot();
            return;
          }
          const payload = request.payload ?? [];
          sent = true;
          connection.send(exchange, {
            op: request.op,
            flags: 0,
            status: 0,
            reserved: 0,
            ref: request.ref,
            offsetBytes: 0,
            lengthBytes: 0,
            arg: 0,
            ...request.header,
            payloadBytes: payload.reduce((sum, part) => sum + part.length, 0),
            payloadCrc: payloadCrc(payload),
          }, payload);
        } catch (error) {
          fail(error instanceof Error ? error : new PeerUnavailableError(String(error)));
        }
      })();
    });
  }

  #decode<T>(request: Request<T>, reply: ReplyFrame): T {
    const { header, parts, payloadIntact } = reply;
    if (header.status !== PeerStatus.ok) {
      const message = payloadIntact ? decodeMessage(parts[0]!) : "(damaged error message)";
      throw errorForStatus(header.status, message, this.address);
    }
    if (!payloadIntact) throw request.damaged();
    return request.decode(parts, header);
  }

  /** The open connection, dialling one if needed. */
  #connected(): Promise<ClientConnection> {
    if (this.#connection !== null && !this.#connection.closed) {
      return Promise.resolve(this.#connection);
    }
    const stall = this.#connection?.stall ?? null;
    if (stall !== null && this.#backoffMs === 0) {
      // The peer stopped answering: likely cut off, so the redial is a probe as after a failed dial.
      this.#backoffMs = this.#limits.reconnectBackoffMinMs;
      this.#lastDialError = stall;
    }
    this.#connection = null;
    // After a failed dial the peer is likely down or cut off: a redial is a probe that
    // calls do not wait for (each would wait up to the dial timeout); they fail at once.
    const probing = this.#backoffMs > 0;
    if (this.#dialing !== null) return probing ? this.#unreachable("reconnecting") : this.#dialing;
    const nowMs = this.#clock.nowMs();
    if (nowMs < this.#backoffUntilMs) {
      return this.#unreachable(`retrying in ${this.#backoffUntilMs - nowMs} ms`);
    }
    const dialing = this.#dial().then(
      (connection) => {
        this.#dialing = null;
        if (this.#closed) {
          connection.close();
          throw new PeerUnavailableError(`${this.address}: the client is closed`);
        }
        this.#backoffMs = 0;
        this.#lastDialError = null;
        this.#connection = connection;
        this.#log.log("debug", `connected to ${this.address}`);
        return connection;
      },
      (error) => {
        this.#dialing = null;
        const { reconnectBackoffMinMs, reconnectBackoffMaxMs } = this.#limits;
        this.#backoffMs = Math.min(
          reconnectBackoffMaxMs,
          Math.max(reconnectBackoffMinMs, this.#backoffMs * 2),
        );
        this.#backoffUntilMs = this.#clock.nowMs() + this.#backoffMs;
        this.#lastDialError = error;
        this.#log.log("info", error.message);
        throw error;
      },
    );
    this.#dialing = dialing;
    if (!probing) return dialing;
    dialing.catch(() => {}); // The probe's failure is recorded above.
    return this.#unreachable("reconnecting");
  }

  /** The error of a call made while the peer is known to be unreachable. */
  #unreachable(state: string): Promise<never> {
    return Promise.reject(
      new PeerUnavailableError(
        `${this.address} is unreachable (${state}): ${this.#lastDialError?.message}`,
        { cause: this.#lastDialError },
      ),
    );
  }

  /** Connects and says hello within the dial timeout; `close()` cuts it short. */
  #dial(): Promise<ClientConnection> {
    const { dialTimeoutMs } = this.#limits;
    return new Promise((resolve, reject) => {
      let over = false;
      let socket: ClientSocket | null = null;
      const abort = (error: Error) => {
        if (over) return;
        over = true;
        this.#clock.clearTimer(timer);
        this.#abortDial = null;
        try {
          socket?.close();
        } catch {
          // Already closed.
        }
        reject(error);
      };
      const timer = this.#clock.setTimer(dialTimeoutMs, () =>
        abort(
          new PeerUnavailableError(
            `Cannot connect to ${this.address}: no answer within ${dialTimeoutMs} ms`,
          ),
        ));
      this.#abortDial = abort;
      this.#connect(this.#hostname, this.#port).then(
        async (opened) => {
          if (over) {
            try {
              opened.close();
            } catch {
              // Already closed.
            }
            return;
          }
          socket = opened;
          try {
            const connection = await ClientConnection.open(opened, {
              address: this.address,
              blockSizeBytes: this.blockSizeBytes,
              requestsInFlightMax: this.#limits.requestsInFlightMax,
              queuedCallsMax: this.#limits.queuedCallsMax,
              keepaliveIntervalMs: this.#limits.keepaliveIntervalMs,
              pingTimeoutMs: this.#limits.pingTimeoutMs,
              stallProbeMs: this.#limits.stallProbeMs,
              nodeUuid: this.#nodeUuid,
              clock: this.#clock,
              log: this.#log,
            });
            if (over) {
              connection.close();
              return;
            }
            over = true;
            this.#clock.clearTimer(timer);
            this.#abortDial = null;
            resolve(connection);
          } catch (error) {
            abort(error as Error);
          }
        },
        (error) =>
          abort(
            new PeerUnavailableError(`Cannot connect to ${this.address}: ${error.message}`, {
              cause: error,
            }),
          ),
      );
    });
  }
}

function emptyReply(header: FrameHeader): number[] | string {
  return header.payloadBytes === 0 && header.offsetBytes === 0 && header.lengthBytes === 0
    ? []
    : `unexpected fields in an empty reply`;
}
