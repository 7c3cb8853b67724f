/**
 * A minimal NBD client for tests: speaks the protocol step by step so tests
 * can send valid, invalid and truncated traffic and inspect every reply.
 * Test-only; real clients are libnbd, qemu and the kernel.
 *
 * @module
 */
import { ByteReader } from "./byte_reader.ts";
import {
  type BlockStatusExtent,
  decodeOptionReplyHeader,
  decodeReplyHeader,
  encodeInfoRequest,
  encodeOption,
  encodeRequest,
  NBD_CMD_READ,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_GREETING_BYTES,
  NBD_INFO_EXPORT,
  NBD_OPT_GO,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_OPTION_REPLY_HEADER_BYTES,
  NBD_REP_ACK,
  NBD_REP_INFO,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REQUEST_BYTES,
  NBD_SIMPLE_REPLY_BYTES,
  NBD_STRUCTURED_REPLY_HEADER_BYTES,
  type NbdRequest,
  type OptionReply,
} from "./protocol.ts";

/** What a raw client talks over: `Deno.Conn` or a test pipe end. */
export interface RawSocket {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

/** A reply as the raw client assembled it. */
export interface RawReply {
  handle: bigint;
  /** 0 on success. */
  errno: number;
  /** Read data (empty for other commands and errors). */
  data: Uint8Array;
  /** The message of a structured error chunk. */
  message: string;
  kind: "simple" | "structured";
  /** The context id of a block status chunk. */
  contextId?: number;
  /** The descriptors of a block status chunk. */
  extents?: BlockStatusExtent[];
}

/** Result of a successful `NBD_OPT_GO`. */
export interface RawExportInfo {
  sizeBytes: number;
  flags: number;
}

/** A test NBD client over one socket. */
export class RawClient {
  readonly socket: RawSocket;
  readonly reader: ByteReader;
  #pending = new Map<bigint, NbdRequest>();
  #nextHandle = 1n;
  structuredReplies = false;

  constructor(socket: RawSocket) {
    this.socket = socket;
    this.reader = new ByteReader(socket);
  }

  /** Opens a TCP connection to a server on this machine. */
  static async connect(port: number, hostname = "127.0.0.1"): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname, port }));
  }

  /** Writes all of `bytes`. */
  async send(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) at += await this.socket.write(bytes.subarray(at));
  }

  /** Reads exactly `length` bytes; throws at end of stream. */
  async receive(length: number): Promise<Uint8Array> {
    const bytes = await this.reader.readCopy(length);
    if (bytes === null) throw new Deno.errors.UnexpectedEof("server closed the connection");
    return bytes;
  }

  /** Whether the server closed the connection (reads end or fail). */
  async closedByServer(): Promise<boolean> {
    try {
      return (await this.reader.readCopy(1)) === null;
    } catch {
      return true;
    }
  }

  /** Reads the greeting and sends client flags. Returns the handshake flags. */
  async greet(clientFlags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): Promise<number> {
    const greeting = await this.receive(NBD_GREETING_BYTES);
    const handshakeFlags = new DataView(greeting.buffer).getUint16(16);
    const flags = new Uint8Array(4);
    new DataView(flags.buffer).setUint32(0, clientFlags);
    await this.send(flags);
    return handshakeFlags;
  }

  /** Sends an option. */
  sendOption(option: number, data?: Uint8Array): Promise<void> {
    return this.send(encodeOption(option, data));
  }

  /** Reads one option reply. */
  async readOptionReply(): Promise<OptionReply> {
    const header = decodeOptionReplyHeader(await this.receive(NBD_OPTION_REPLY_HEADER_BYTES));
    const data = await this.receive(header.lengthBytes);
    return { option: header.option, replyType: header.replyType, data };
  }

  /** Negotiates structured replies; true when the server agreed. */
  async negotiateStructuredReplies(): Promise<boolean> {
    await this.sendOption(NBD_OPT_STRUCTURED_REPLY);
    const reply = await this.readOptionReply();
    this.structuredReplies = reply.replyType === NBD_REP_ACK;
    return this.structuredReplies;
  }

  /**
   * Sends `NBD_OPT_GO`; resolves to the export's size and flags on success,
   * or to the final option reply on error.
   */
  async go(name: string, infos: number[] = []): Promise<RawExportInfo | OptionReply> {
    await this.sendOption(NBD_OPT_GO, encodeInfoRequest({ name, infos }));
    let info: RawExportInfo | null = null;
    for (;;) {
      const reply = await this.readOptionReply();
      if (reply.replyType === NBD_REP_INFO) {
        const dv = new DataView(reply.data.buffer, reply.data.byteOffset, reply.data.byteLength);
        if (dv.getUint16(0) === NBD_INFO_EXPORT) {
          info = { sizeBytes: Number(dv.getBigUint64(2)), flags: dv.getUint16(10) };
        }
        continue;
      }
      if (reply.replyType === NBD_REP_ACK && info !== null) return info;
      return reply;
    }
  }

  /** Greets, optionally negotiates structured replies, and enters transmission. */
  async attach(name: string, options: { structured?: boolean } = {}): Promise<RawExportInfo> {
    await this.greet();
    if (options.structured ?? true) await this.negotiateStructuredReplies();
    const result = await this.go(name);
    if (!("sizeBytes" in result)) {
      throw new Error(`NBD_OPT_GO failed: reply type 0x${result.replyType.toString(16)}`);
    }
    return result;
  }

  /** Sends requests without payloads in a single write (they arrive together); returns their handles. */
  async requestBatch(requests: Omit<NbdRequest, "handle">[]): Promise<bigint[]> {
    const handles: bigint[] = [];
    const batch = new Uint8Array(requests.length * NBD_REQUEST_BYTES);
    requests.forEach((request, i) => {
      const full = { ...request, handle: this.#nextHandle++ };
      this.#pending.set(full.handle, full);
      handles.push(full.handle);
      batch.set(encodeRequest(full), i * NBD_REQUEST_BYTES);
    });
    await this.send(batch);
    return handles;
  }

  /** Sends a request (and its payload); returns its handle. */
  async request(
    request: Omit<NbdRequest, "handle"> & { handle?: bigint },
    payload?: Uint8Array,
  ): Promise<bigint> {
    const handle = request.handle ?? this.#nextHandle++;
    const full = { ...request, handle };
    this.#pending.set(handle, full);
    const header = encodeRequest(full);
    if (payload === undefined) await this.send(header);
    else {
      const both = new Uint8Array(header.length + payload.length);
      both.set(header);
      both.set(payload, header.length);
      await this.send(both);
    }
    return handle;
  }

  /** Reads one whole reply (every chunk of a structured one). */
  async readReply(): Promise<RawReply> {
    const magic = await this.receive(4);
    const isSimple = new DataView(magic.buffer).getUint32(0) === 0x67446698;
    const rest = await this.receive(
      (isSimple ? NBD_SIMPLE_REPLY_BYTES : NBD_STRUCTURED_REPLY_HEADER_BYTES) - 4,
    );
    const headerBytes = new Uint8Array(magic.length + rest.length);
    headerBytes.set(magic);
    headerBytes.set(rest, 4);
    let header = decodeReplyHeader(headerBytes);
    const request = this.#pending.get(header.handle);
    if (request === undefined) throw new Error(`reply to unknown handle ${header.handle}`);
    if (header.kind === "simple") {
      this.#pending.delete(header.handle);
      const data = header.errno === 0 && request.type === NBD_CMD_READ
        ? await this.receive(request.lengthBytes)
        : new Uint8Array(0);
      return { handle: header.handle, errno: header.errno, data, message: "", kind: "simple" };
    }
    const data = new Uint8Array(request.type === NBD_CMD_READ ? request.lengthBytes : 0);
    let errno = 0;
    let message = "";
    let contextId: number | undefined;
    const extents: BlockStatusExtent[] = [];
    for (;;) {
      const payload = await this.receive(header.lengthBytes);
      const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
      if (header.type === NBD_REPLY_TYPE_OFFSET_DATA) {
        const offset = Number(dv.getBigUint64(0));
        data.set(payload.subarray(8), offset - request.offsetBytes);
      } else if (header.type === NBD_REPLY_TYPE_BLOCK_STATUS) {
        contextId = dv.getUint32(0);
        for (let at = 4; at + 8 <= payload.length; at += 8) {
          extents.push({ lengthBytes: dv.getUint32(at), flags: dv.getUint32(at + 4) });
        }
      } else if (header.type === NBD_REPLY_TYPE_ERROR) {
        errno = dv.getUint32(0);
        message = new TextDecoder().decode(payload.subarray(6, 6 + dv.getUint16(4)));
      } else if (header.type !== NBD_REPLY_TYPE_NONE) {
        throw new Error(`unexpected chunk type ${header.type}`);
      }
      if ((header.flags & NBD_REPLY_FLAG_DONE) !== 0) break;
      const next = decodeReplyHeader(await this.receive(NBD_STRUCTURED_REPLY_HEADER_BYTES));
      if (next.kind !== "structured" || next.handle !== header.handle) {
        throw new Error("interleaved chunks are not supported by this test client");
      }
      header = next;
    }
    this.#pending.delete(request.handle);
    return {
      handle: request.handle,
      errno,
      data: errno === 0 ? data : new Uint8Array(0),
      message,
      kind: "structured",
      ...(contextId === undefined ? {} : { contextId, extents }),
    };
  }

  /** Sends one request and reads one reply (no other request may be in flight). */
  async call(
    request: Omit<NbdRequest, "handle">,
    payload?: Uint8Array,
  ): Promise<RawReply> {
    await this.request(request, payload);
    return await this.readReply();
  }

  /** Closes the socket (ignoring errors). */
  close(): void {
    try {
      this.socket.close();
    } catch {
      // Already closed.
    }
  }
}
