/**
 * A minimal peer protocol endpoint for tests: sends hellos and frames byte
 * by byte as told (valid, invalid, truncated) and reads whatever comes back.
 * Test-only; the real client is `peer_client.ts`.
 *
 * @module
 */
import { ByteReader } from "../nbd/byte_reader.ts";
import {
  decodeFrameHeader,
  decodeHello,
  encodeFrameHeader,
  encodeHello,
  encodeNodeUuid,
  type FrameHeader,
  frameHeader,
  type Hello,
  HelloStatus,
  payloadCrc,
  PEER_FRAME_HEADER_BYTES,
  PEER_HELLO_BYTES,
  PEER_PROTOCOL_VERSION,
  PEER_PROTOCOL_VERSION_MIN,
} from "./frame.ts";

/** A socket a raw endpoint talks over. */
export interface RawSocket {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

/** A reply as read off the wire. */
export interface RawReply {
  header: FrameHeader;
  payload: Uint8Array;
}

/** A client hello with sensible defaults. */
export function clientHello(blockSizeBytes: number, fields: Partial<Hello> = {}): Hello {
  return {
    versionMin: PEER_PROTOCOL_VERSION_MIN,
    versionMax: PEER_PROTOCOL_VERSION,
    status: HelloStatus.ok,
    blockSizeBytes,
    requestsInFlightMax: 64,
    nodeUuid: encodeNodeUuid(),
    ...fields,
  };
}

/** Encodes a frame: header (payload length and CRC filled in unless given) and payload. */
export function encodeFrame(
  fields: Partial<FrameHeader> & { requestId: number; op: number },
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const header = encodeFrameHeader(frameHeader({
    payloadBytes: payload.length,
    payloadCrc: payloadCrc([payload]),
    ...fields,
  }));
  const bytes = new Uint8Array(header.length + payload.length);
  bytes.set(header);
  bytes.set(payload, header.length);
  return bytes;
}

/** A raw endpoint over one socket. */
export class RawPeer {
  readonly socket: RawSocket;
  readonly reader: ByteReader;
  #closed = false;

  constructor(socket: RawSocket) {
    this.socket = socket;
    this.reader = new ByteReader(socket);
  }

  /** Opens a TCP connection to a server on this machine. */
  static async connect(port: number, hostname = "127.0.0.1"): Promise<RawPeer> {
    return new RawPeer(await Deno.connect({ hostname, port }));
  }

  /** Writes all of `bytes`. */
  async send(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) at += await this.socket.write(bytes.subarray(at));
  }

  /** Reads exactly `length` bytes; throws at end of stream. */
  async receive(length: number): Promise<Uint8Array> {
    const bytes = await this.reader.readCopy(length);
    if (bytes === null) throw new Deno.errors.UnexpectedEof("the other end closed the connection");
    return bytes;
  }

  /** Sends a client hello and returns the server's. */
  async hello(blockSizeBytes: number, fields: Partial<Hello> = {}): Promise<Hello> {
    await this.send(encodeHello(clientHello(blockSizeBytes, fields)));
    return decodeHello(await this.receive(PEER_HELLO_BYTES));
  }

  /** Sends one request frame. */
  request(
    fields: Partial<FrameHeader> & { requestId: number; op: number },
    payload?: Uint8Array,
  ): Promise<void> {
    return this.send(encodeFrame(fields, payload));
  }

  /** Reads one reply frame and its payload. */
  async reply(): Promise<RawReply> {
    const header = decodeFrameHeader(await this.receive(PEER_FRAME_HEADER_BYTES));
    return { header, payload: await this.receive(header.payloadBytes) };
  }

  /** Whether the other end closed the connection (reads end or fail), skipping what it sends. */
  async closedByPeer(): Promise<boolean> {
    try {
      for (;;) {
        if ((await this.reader.readCopy(1)) === null) return true;
      }
    } catch {
      return true;
    }
  }

  /** Closes the socket (safe to call again). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.socket.close();
    } catch {
      // Already closed.
    }
  }
}
