/**
 * The NBD wire protocol (fixed newstyle handshake, simple and structured
 * replies) as pure, synchronous encoders and decoders, and its constants.
 * Nothing here touches a socket: the server reads bytes at the edge and hands
 * them to these functions.
 *
 * Bad bytes throw `SyntaxError`, as everywhere in Torus.
 *
 * Reference: the NBD protocol, `doc/proto.md` of NetworkBlockDevice/nbd.
 *
 * @module
 */
import { assert } from "../assert.ts";

// ---------------------------------------------------------------------------
// Magics

/** `NBDMAGIC`: the first 8 bytes the server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** `IHAVEOPT`: newstyle handshake magic, also prefixing every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Magic prefixing every option reply of the fixed newstyle handshake. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
/** Magic of a transmission request. */
export const NBD_REQUEST_MAGIC = 0x25609513;
/** Magic of a simple reply. */
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
/** Magic of a structured reply chunk. */
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// ---------------------------------------------------------------------------
// Handshake flags (16 bits, server) and client flags (32 bits)

/** Handshake flag: the server speaks fixed newstyle. */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
/** Handshake flag: the server can omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`. */
export const NBD_FLAG_NO_ZEROES = 1 << 1;
/** Client flag: the client speaks fixed newstyle. */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
/** Client flag: the server must omit the 124 zero bytes. */
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;
/** Every client flag this server understands; any other bit closes the connection. */
export const NBD_CLIENT_FLAGS_KNOWN = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

// ---------------------------------------------------------------------------
// Transmission flags (16 bits)

/** Transmission flag: always set. */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
/** Transmission flag: the export is read-only. */
export const NBD_FLAG_READ_ONLY = 1 << 1;
/** Transmission flag: the server supports `NBD_CMD_FLUSH`. */
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
/** Transmission flag: the server supports `NBD_CMD_FLAG_FUA`. */
export const NBD_FLAG_SEND_FUA = 1 << 3;
/** Transmission flag: the export behaves like a rotational medium. */
export const NBD_FLAG_ROTATIONAL = 1 << 4;
/** Transmission flag: the server supports `NBD_CMD_TRIM`. */
export const NBD_FLAG_SEND_TRIM = 1 << 5;
/** Transmission flag: the server supports `NBD_CMD_WRITE_ZEROES`. */
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
/** Transmission flag: the server supports `NBD_CMD_FLAG_DF` (structured replies only). */
export const NBD_FLAG_SEND_DF = 1 << 7;
/** Transmission flag: flush and FUA are visible across every connection to the export. */
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

// ---------------------------------------------------------------------------
// Options

/** Option: choose an export and enter transmission (no error reply possible). */
export const NBD_OPT_EXPORT_NAME = 1;
/** Option: end the handshake; the server replies `NBD_REP_ACK` and closes. */
export const NBD_OPT_ABORT = 2;
/** Option: list the exports. */
export const NBD_OPT_LIST = 3;
/** Option: upgrade to TLS (not supported here). */
export const NBD_OPT_STARTTLS = 5;
/** Option: describe an export without entering transmission. */
export const NBD_OPT_INFO = 6;
/** Option: describe an export and enter transmission. */
export const NBD_OPT_GO = 7;
/** Option: use structured replies during transmission. */
export const NBD_OPT_STRUCTURED_REPLY = 8;
/** Option: list metadata contexts (`base:allocation` is the one served). */
export const NBD_OPT_LIST_META_CONTEXT = 9;
/** Option: select metadata contexts for `NBD_CMD_BLOCK_STATUS`. */
export const NBD_OPT_SET_META_CONTEXT = 10;
/** The metadata context served: which ranges are holes and read as zeros. */
export const NBD_META_CONTEXT_BASE_ALLOCATION = "base:allocation";
/** The id the server gives `base:allocation` in `NBD_REP_META_CONTEXT` and block status chunks. */
export const NBD_BASE_ALLOCATION_ID = 1;
/** Queries of one meta context option the server reads; more is `NBD_REP_ERR_TOO_BIG`. */
export const NBD_META_CONTEXT_QUERIES_MAX = 16;

// ---------------------------------------------------------------------------
// Option reply types

/** Option reply: the option succeeded, or a list has ended. */
export const NBD_REP_ACK = 1;
/** Option reply: one export of `NBD_OPT_LIST`. */
export const NBD_REP_SERVER = 2;
/** Option reply: one piece of information of `NBD_OPT_INFO` / `NBD_OPT_GO`. */
export const NBD_REP_INFO = 3;
/** Option reply: one metadata context (its id, then its name). */
export const NBD_REP_META_CONTEXT = 4;
/** Bit 31 marks every option error reply. */
export const NBD_REP_FLAG_ERROR = 0x8000_0000;
/** Option error: the option is unknown to this server. */
export const NBD_REP_ERR_UNSUP: number = NBD_REP_FLAG_ERROR + 1;
/** Option error: server policy forbids the option (e.g. the export is in use). */
export const NBD_REP_ERR_POLICY: number = NBD_REP_FLAG_ERROR + 2;
/** Option error: the option's data is malformed. */
export const NBD_REP_ERR_INVALID: number = NBD_REP_FLAG_ERROR + 3;
/** Option error: not supported on this platform. */
export const NBD_REP_ERR_PLATFORM: number = NBD_REP_FLAG_ERROR + 4;
/** Option error: TLS is required first. */
export const NBD_REP_ERR_TLS_REQD: number = NBD_REP_FLAG_ERROR + 5;
/** Option error: the export does not exist. */
export const NBD_REP_ERR_UNKNOWN: number = NBD_REP_FLAG_ERROR + 6;
/** Option error: the server is shutting down. */
export const NBD_REP_ERR_SHUTDOWN: number = NBD_REP_FLAG_ERROR + 7;
/** Option error: the client must request block size constraints. */
export const NBD_REP_ERR_BLOCK_SIZE_REQD: number = NBD_REP_FLAG_ERROR + 8;
/** Option error: the request or its reply is too large. */
export const NBD_REP_ERR_TOO_BIG: number = NBD_REP_FLAG_ERROR + 9;

// ---------------------------------------------------------------------------
// Information types of NBD_REP_INFO

/** Info: export size and transmission flags (mandatory on success). */
export const NBD_INFO_EXPORT = 0;
/** Info: the canonical export name. */
export const NBD_INFO_NAME = 1;
/** Info: a human-readable description. */
export const NBD_INFO_DESCRIPTION = 2;
/** Info: minimum, preferred and maximum block sizes. */
export const NBD_INFO_BLOCK_SIZE = 3;

// ---------------------------------------------------------------------------
// Commands and command flags

/** Command: read. */
export const NBD_CMD_READ = 0;
/** Command: report the selected metadata context (`base:allocation`) of a range. */
export const NBD_CMD_BLOCK_STATUS = 7;
/** Command flag of `NBD_CMD_BLOCK_STATUS`: report one extent only. */
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
/** Command: write (payload follows the request). */
export const NBD_CMD_WRITE = 1;
/** Command: soft disconnect (no reply). */
export const NBD_CMD_DISC = 2;
/** Command: flush every completed write to stable storage. */
export const NBD_CMD_FLUSH = 3;
/** Command: discard a range (reads back as zeroes here). */
export const NBD_CMD_TRIM = 4;
/** Command: write zeroes without a payload. */
export const NBD_CMD_WRITE_ZEROES = 6;

/** Command flag: force unit access — durable before the reply. Valid on every command. */
export const NBD_CMD_FLAG_FUA = 1 << 0;
/** Command flag: `NBD_CMD_WRITE_ZEROES` must not deallocate. */
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
/** Command flag: `NBD_CMD_READ` must be answered by at most one content chunk. */
export const NBD_CMD_FLAG_DF = 1 << 2;
/** Command flag: `NBD_CMD_WRITE_ZEROES` must fail fast unless it is faster than a write. */
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// ---------------------------------------------------------------------------
// Structured replies

/** Structured reply flag: the final chunk of a reply. */
export const NBD_REPLY_FLAG_DONE = 1 << 0;
/** Chunk type: no payload; ends a reply. */
export const NBD_REPLY_TYPE_NONE = 0;
/** Chunk type: 64-bit offset, then data. */
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
/** Chunk type: a hole of zeroes. */
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
/** Chunk type: block status, a context id then (length, flags) descriptors. */
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
/** `base:allocation` flag: the range is a hole (not allocated). */
export const NBD_STATE_HOLE = 1 << 0;
/** `base:allocation` flag: the range reads as zeros. */
export const NBD_STATE_ZERO = 1 << 1;
/** Most descriptors in one block status reply; the client asks again for the rest. */
export const NBD_BLOCK_STATUS_DESCRIPTORS_MAX = 1024;
/** Chunk type: error, 16-bit message length, message. */
export const NBD_REPLY_TYPE_ERROR: number = (1 << 15) + 1;
/** Chunk type: error at an offset. */
export const NBD_REPLY_TYPE_ERROR_OFFSET: number = (1 << 15) + 2;

// ---------------------------------------------------------------------------
// Errno values of the error field

/** Operation not permitted (write to a read-only export). */
export const NBD_EPERM = 1;
/** Input/output error. */
export const NBD_EIO = 5;
/** Cannot allocate memory (avoided). */
export const NBD_ENOMEM = 12;
/** Invalid argument (bad range, unknown command or flag). */
export const NBD_EINVAL = 22;
/** No space left on device (write past the end, store full). */
export const NBD_ENOSPC = 28;
/** Value too large. */
export const NBD_EOVERFLOW = 75;
/** Operation not supported. */
export const NBD_ENOTSUP = 95;
/** The server is shutting down. */
export const NBD_ESHUTDOWN = 108;

// ---------------------------------------------------------------------------
// Sizes and limits

/** The IANA port of NBD. */
export const NBD_DEFAULT_PORT = 10809;
/** Bytes of the server greeting: two magics and the 16-bit handshake flags. */
export const NBD_GREETING_BYTES = 18;
/** Bytes of the client flags. */
export const NBD_CLIENT_FLAGS_BYTES = 4;
/** Bytes of an option header: magic, option, length. */
export const NBD_OPTION_HEADER_BYTES = 16;
/** Bytes of an option reply header: magic, option, type, length. */
export const NBD_OPTION_REPLY_HEADER_BYTES = 20;
/** Bytes of the reply to `NBD_OPT_EXPORT_NAME` without its zero padding. */
export const NBD_EXPORT_NAME_REPLY_BYTES = 10;
/** Zero bytes padding the `NBD_OPT_EXPORT_NAME` reply unless `NO_ZEROES` was agreed. */
export const NBD_EXPORT_NAME_PADDING_BYTES = 124;
/** Bytes of a transmission request header. */
export const NBD_REQUEST_BYTES = 28;
/** Bytes of a simple reply header. */
export const NBD_SIMPLE_REPLY_BYTES = 16;
/** Bytes of a structured reply chunk header. */
export const NBD_STRUCTURED_REPLY_HEADER_BYTES = 20;
/** Bytes of the offset prefixing `NBD_REPLY_TYPE_OFFSET_DATA` data. */
export const NBD_OFFSET_DATA_PREFIX_BYTES = 8;
/**
 * Longest option data the server reads. The longest valid option is an
 * `NBD_OPT_GO` with a 4 KiB name and a few info requests; 64 KiB leaves room
 * and bounds what a hostile client can make the server buffer.
 */
export const NBD_OPTION_LENGTH_BYTES_MAX = 64 * 1024;
/** Longest string (export name, message) the protocol allows, in bytes of UTF-8. */
export const NBD_STRING_BYTES_MAX = 4096;
/**
 * Largest READ or WRITE payload the server accepts: the spec's 2^25 bytes,
 * which every client keeps to unless told otherwise. Advertised as the
 * maximum payload of `NBD_INFO_BLOCK_SIZE`.
 */
export const NBD_MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** Advertised minimum block size: any byte is addressable. */
export const NBD_BLOCK_SIZE_MIN_BYTES = 1;
/** Advertised preferred block size. */
export const NBD_BLOCK_SIZE_PREFERRED_BYTES = 4096;
/**
 * Largest effect length of TRIM and WRITE_ZEROES, which carry no payload:
 * 2^32 - 1, the whole range of the 32-bit length field.
 */
export const NBD_EFFECT_LENGTH_BYTES_MAX = 0xffff_ffff;
/** Longest error message sent in an `NBD_REPLY_TYPE_ERROR` chunk, in bytes. */
export const NBD_ERROR_MESSAGE_BYTES_MAX = 1024;

assert(NBD_MAX_REQUEST_BYTES <= NBD_EFFECT_LENGTH_BYTES_MAX - NBD_OFFSET_DATA_PREFIX_BYTES);
assert(NBD_STRING_BYTES_MAX + 6 <= NBD_OPTION_LENGTH_BYTES_MAX);
assert(NBD_ERROR_MESSAGE_BYTES_MAX <= 0xffff);

// ---------------------------------------------------------------------------
// Names, for logs and messages

const OPTION_NAMES: Record<number, string> = {
  [NBD_OPT_EXPORT_NAME]: "NBD_OPT_EXPORT_NAME",
  [NBD_OPT_ABORT]: "NBD_OPT_ABORT",
  [NBD_OPT_LIST]: "NBD_OPT_LIST",
  [NBD_OPT_STARTTLS]: "NBD_OPT_STARTTLS",
  [NBD_OPT_INFO]: "NBD_OPT_INFO",
  [NBD_OPT_GO]: "NBD_OPT_GO",
  [NBD_OPT_STRUCTURED_REPLY]: "NBD_OPT_STRUCTURED_REPLY",
  [NBD_OPT_LIST_META_CONTEXT]: "NBD_OPT_LIST_META_CONTEXT",
  [NBD_OPT_SET_META_CONTEXT]: "NBD_OPT_SET_META_CONTEXT",
};

const COMMAND_NAMES: Record<number, string> = {
  [NBD_CMD_READ]: "NBD_CMD_READ",
  [NBD_CMD_WRITE]: "NBD_CMD_WRITE",
  [NBD_CMD_DISC]: "NBD_CMD_DISC",
  [NBD_CMD_FLUSH]: "NBD_CMD_FLUSH",
  [NBD_CMD_TRIM]: "NBD_CMD_TRIM",
  [NBD_CMD_WRITE_ZEROES]: "NBD_CMD_WRITE_ZEROES",
  [NBD_CMD_BLOCK_STATUS]: "NBD_CMD_BLOCK_STATUS",
};

const ERRNO_NAMES: Record<number, string> = {
  [NBD_EPERM]: "EPERM",
  [NBD_EIO]: "EIO",
  [NBD_ENOMEM]: "ENOMEM",
  [NBD_EINVAL]: "EINVAL",
  [NBD_ENOSPC]: "ENOSPC",
  [NBD_EOVERFLOW]: "EOVERFLOW",
  [NBD_ENOTSUP]: "ENOTSUP",
  [NBD_ESHUTDOWN]: "ESHUTDOWN",
};

/** The name of an option, e.g. `NBD_OPT_GO`, or `option 42`. */
export function optionName(option: number): string {
  return OPTION_NAMES[option] ?? `option ${option}`;
}

/** The name of a command, e.g. `NBD_CMD_READ`, or `command 42`. */
export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `command ${type}`;
}

/** The name of an NBD errno, e.g. `EINVAL`, or `errno 42`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

// ---------------------------------------------------------------------------
// Helpers

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkLength(bytes: Uint8Array, expected: number, what: string): void {
  if (bytes.length !== expected) {
    throw new SyntaxError(`${what}: expected ${expected} bytes, got ${bytes.length}`);
  }
}

/** Reads an unsigned 64-bit big-endian integer as a number; values past 2^53 are inexact but stay past 2^53. */
function getU64AsNumber(dv: DataView, offset: number): number {
  return dv.getUint32(offset) * 0x1_0000_0000 + dv.getUint32(offset + 4);
}

function setU64FromNumber(dv: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `not a u64: ${value}`);
  dv.setUint32(offset, Math.floor(value / 0x1_0000_0000));
  dv.setUint32(offset + 4, value >>> 0);
}

/**
 * Decodes a protocol string: valid UTF-8, no NUL, at most
 * {@linkcode NBD_STRING_BYTES_MAX} bytes.
 *
 * @throws {SyntaxError} when it is none of these.
 */
export function decodeString(bytes: Uint8Array): string {
  if (bytes.length > NBD_STRING_BYTES_MAX) {
    throw new SyntaxError(`string of ${bytes.length} bytes exceeds ${NBD_STRING_BYTES_MAX}`);
  }
  if (bytes.includes(0)) throw new SyntaxError("string contains NUL");
  try {
    return strictDecoder.decode(bytes);
  } catch {
    throw new SyntaxError("string is not valid UTF-8");
  }
}

/** Encodes a string as UTF-8, cut at a character boundary to at most `maxBytes`. */
export function encodeStringBounded(text: string, maxBytes: number): Uint8Array {
  let bytes = encoder.encode(text);
  if (bytes.length <= maxBytes) return bytes;
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  bytes = bytes.subarray(0, end);
  return bytes;
}

// ---------------------------------------------------------------------------
// Handshake

/** The server's first message: `NBDMAGIC`, `IHAVEOPT`, handshake flags. */
export function encodeGreeting(handshakeFlags: number): Uint8Array {
  const out = new Uint8Array(NBD_GREETING_BYTES);
  const dv = view(out);
  dv.setBigUint64(0, NBD_INIT_MAGIC);
  dv.setBigUint64(8, NBD_OPTS_MAGIC);
  dv.setUint16(16, handshakeFlags);
  return out;
}

/** Decoded client flags. */
export interface ClientFlags {
  /** `NBD_FLAG_C_FIXED_NEWSTYLE`: the client speaks fixed newstyle. */
  fixedNewstyle: boolean;
  /** `NBD_FLAG_C_NO_ZEROES`: omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`. */
  noZeroes: boolean;
}

/**
 * Decodes the client's 32-bit flags.
 *
 * @throws {SyntaxError} on a flag the server did not offer: the spec has the
 * server drop the connection.
 */
export function decodeClientFlags(bytes: Uint8Array): ClientFlags {
  checkLength(bytes, NBD_CLIENT_FLAGS_BYTES, "client flags");
  const flags = view(bytes).getUint32(0);
  if ((flags & ~NBD_CLIENT_FLAGS_KNOWN) !== 0) {
    throw new SyntaxError(`unknown client flags 0x${flags.toString(16)}`);
  }
  return {
    fixedNewstyle: (flags & NBD_FLAG_C_FIXED_NEWSTYLE) !== 0,
    noZeroes: (flags & NBD_FLAG_C_NO_ZEROES) !== 0,
  };
}

/** The header of a client option. */
export interface OptionHeader {
  /** The option (`NBD_OPT_*`). */
  option: number;
  /** Bytes of option data that follow. */
  lengthBytes: number;
}

/**
 * Decodes an option header.
 *
 * @throws {SyntaxError} when the magic is not `IHAVEOPT`.
 */
export function decodeOptionHeader(bytes: Uint8Array): OptionHeader {
  checkLength(bytes, NBD_OPTION_HEADER_BYTES, "option header");
  const dv = view(bytes);
  const magic = dv.getBigUint64(0);
  if (magic !== NBD_OPTS_MAGIC) {
    throw new SyntaxError(`bad option magic 0x${magic.toString(16)}`);
  }
  return { option: dv.getUint32(8), lengthBytes: dv.getUint32(12) };
}

/** Encodes a client option; used by tests and clients. */
export function encodeOption(option: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(NBD_OPTION_HEADER_BYTES + data.length);
  const dv = view(out);
  dv.setBigUint64(0, NBD_OPTS_MAGIC);
  dv.setUint32(8, option);
  dv.setUint32(12, data.length);
  out.set(data, NBD_OPTION_HEADER_BYTES);
  return out;
}

/** Encodes an option reply: header and data. */
export function encodeOptionReply(
  option: number,
  replyType: number,
  data: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const out = new Uint8Array(NBD_OPTION_REPLY_HEADER_BYTES + data.length);
  const dv = view(out);
  dv.setBigUint64(0, NBD_REP_MAGIC);
  dv.setUint32(8, option);
  dv.setUint32(12, replyType >>> 0);
  dv.setUint32(16, data.length);
  out.set(data, NBD_OPTION_REPLY_HEADER_BYTES);
  return out;
}

/** Encodes an option error reply carrying a human-readable message. */
export function encodeOptionError(option: number, replyType: number, message: string): Uint8Array {
  assert((replyType & NBD_REP_FLAG_ERROR) !== 0, "not an error reply type");
  return encodeOptionReply(option, replyType, encodeStringBounded(message, NBD_STRING_BYTES_MAX));
}

/** A decoded option reply (for clients and tests). */
export interface OptionReply {
  /** The option replied to. */
  option: number;
  /** The reply type (`NBD_REP_*`). */
  replyType: number;
  /** The reply's data. */
  data: Uint8Array;
}

/**
 * Decodes an option reply header; `data` is empty and `lengthBytes` tells
 * how many bytes follow.
 *
 * @throws {SyntaxError} on a bad magic.
 */
export function decodeOptionReplyHeader(
  bytes: Uint8Array,
): { option: number; replyType: number; lengthBytes: number } {
  checkLength(bytes, NBD_OPTION_REPLY_HEADER_BYTES, "option reply header");
  const dv = view(bytes);
  if (dv.getBigUint64(0) !== NBD_REP_MAGIC) throw new SyntaxError("bad option reply magic");
  return { option: dv.getUint32(8), replyType: dv.getUint32(12), lengthBytes: dv.getUint32(16) };
}

/** Data of an `NBD_REP_SERVER` reply: the export name's length, then the name. */
export function encodeServerReplyData(name: string): Uint8Array {
  const nameBytes = encoder.encode(name);
  const out = new Uint8Array(4 + nameBytes.length);
  view(out).setUint32(0, nameBytes.length);
  out.set(nameBytes, 4);
  return out;
}

/** Reply to `NBD_OPT_EXPORT_NAME`: size, flags, and 124 zeroes unless `noZeroes`. */
export function encodeExportNameReply(
  sizeBytes: number,
  transmissionFlags: number,
  noZeroes: boolean,
): Uint8Array {
  const out = new Uint8Array(
    NBD_EXPORT_NAME_REPLY_BYTES + (noZeroes ? 0 : NBD_EXPORT_NAME_PADDING_BYTES),
  );
  const dv = view(out);
  setU64FromNumber(dv, 0, sizeBytes);
  dv.setUint16(8, transmissionFlags);
  return out;
}

/** Data of an `NBD_REP_INFO` reply of type `NBD_INFO_EXPORT`. */
export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Uint8Array {
  const out = new Uint8Array(12);
  const dv = view(out);
  dv.setUint16(0, NBD_INFO_EXPORT);
  setU64FromNumber(dv, 2, sizeBytes);
  dv.setUint16(10, transmissionFlags);
  return out;
}

/** Data of an `NBD_REP_INFO` reply of type `NBD_INFO_NAME`. */
export function encodeInfoName(name: string): Uint8Array {
  const nameBytes = encoder.encode(name);
  const out = new Uint8Array(2 + nameBytes.length);
  view(out).setUint16(0, NBD_INFO_NAME);
  out.set(nameBytes, 2);
  return out;
}

/** Data of an `NBD_REP_INFO` reply of type `NBD_INFO_BLOCK_SIZE`. */
export function encodeInfoBlockSize(
  minimumBytes: number,
  preferredBytes: number,
  maximumPayloadBytes: number,
): Uint8Array {
  const out = new Uint8Array(14);
  const dv = view(out);
  dv.setUint16(0, NBD_INFO_BLOCK_SIZE);
  dv.setUint32(2, minimumBytes);
  dv.setUint32(6, preferredBytes);
  dv.setUint32(10, maximumPayloadBytes);
  return out;
}

/** The data of `NBD_OPT_INFO` / `NBD_OPT_GO`. */
export interface InfoRequest {
  /** Export name; `""` is the default export. */
  name: string;
  /** The `NBD_INFO_*` types the client asks for. */
  infos: number[];
}

/**
 * Decodes the data of `NBD_OPT_INFO` / `NBD_OPT_GO`.
 *
 * @throws {SyntaxError} when lengths disagree or the name is not a valid string.
 */
export function decodeInfoRequest(data: Uint8Array): InfoRequest {
  if (data.length < 6) throw new SyntaxError(`info request of ${data.length} bytes is too short`);
  const dv = view(data);
  const nameBytes = dv.getUint32(0);
  if (nameBytes > data.length - 6) {
    throw new SyntaxError(`name length ${nameBytes} exceeds option data ${data.length}`);
  }
  const name = decodeString(data.subarray(4, 4 + nameBytes));
  const count = dv.getUint16(4 + nameBytes);
  const rest = data.length - 6 - nameBytes;
  if (rest !== count * 2) {
    throw new SyntaxError(`${count} info requests need ${count * 2} bytes, got ${rest}`);
  }
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(dv.getUint16(6 + nameBytes + i * 2));
  return { name, infos };
}

/** Encodes the data of `NBD_OPT_INFO` / `NBD_OPT_GO`; used by tests and clients. */
export function encodeInfoRequest(request: InfoRequest): Uint8Array {
  const nameBytes = encoder.encode(request.name);
  const out = new Uint8Array(6 + nameBytes.length + request.infos.length * 2);
  const dv = view(out);
  dv.setUint32(0, nameBytes.length);
  out.set(nameBytes, 4);
  dv.setUint16(4 + nameBytes.length, request.infos.length);
  request.infos.forEach((info, i) => dv.setUint16(6 + nameBytes.length + i * 2, info));
  return out;
}

/** What an export tells the flags. */
export interface ExportTraits {
  /** The export refuses writes. */
  readOnly: boolean;
  /** Flush and FUA are visible across connections. */
  multiConn: boolean;
}

/**
 * The transmission flags, advertised truthfully: flush always; FUA, trim
 * and write zeroes unless the export is read-only (they would only fail);
 * DF only once structured replies are agreed (a read is always one chunk);
 * multi-conn only when the export says so.
 */
export function transmissionFlags(traits: ExportTraits, structuredReplies: boolean): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH;
  if (traits.readOnly) flags |= NBD_FLAG_READ_ONLY;
  else flags |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
  if (traits.multiConn) flags |= NBD_FLAG_CAN_MULTI_CONN;
  if (structuredReplies) flags |= NBD_FLAG_SEND_DF;
  return flags;
}

// ---------------------------------------------------------------------------
// Transmission

/** A decoded transmission request header. */
export interface NbdRequest {
  /** Command flags (`NBD_CMD_FLAG_*`). */
  flags: number;
  /** Command type (`NBD_CMD_*`). */
  type: number;
  /** The client's opaque handle, echoed in the reply. */
  handle: bigint;
  /**
   * Offset in bytes. Exact up to 2^53; larger wire values decode to a
   * number past 2^53, which every range check rejects.
   */
  offsetBytes: number;
  /** Length in bytes (the payload length of a WRITE). */
  lengthBytes: number;
}

/**
 * Decodes a request header.
 *
 * @throws {SyntaxError} on a bad magic: the connection cannot be resynchronised.
 */
export function decodeRequest(bytes: Uint8Array): NbdRequest {
  checkLength(bytes, NBD_REQUEST_BYTES, "request");
  const dv = view(bytes);
  const magic = dv.getUint32(0);
  if (magic !== NBD_REQUEST_MAGIC) {
    throw new SyntaxError(`bad request magic 0x${magic.toString(16)}`);
  }
  return {
    flags: dv.getUint16(4),
    type: dv.getUint16(6),
    handle: dv.getBigUint64(8),
    offsetBytes: getU64AsNumber(dv, 16),
    lengthBytes: dv.getUint32(24),
  };
}

/** Encodes a request header; used by tests and clients. */
export function encodeRequest(request: NbdRequest): Uint8Array {
  const out = new Uint8Array(NBD_REQUEST_BYTES);
  const dv = view(out);
  dv.setUint32(0, NBD_REQUEST_MAGIC);
  dv.setUint16(4, request.flags);
  dv.setUint16(6, request.type);
  dv.setBigUint64(8, request.handle);
  setU64FromNumber(dv, 16, request.offsetBytes);
  dv.setUint32(24, request.lengthBytes);
  return out;
}

/**
 * Encodes a simple reply header (the data of a successful READ follows it),
 * into `out` when given (it must be {@linkcode NBD_SIMPLE_REPLY_BYTES} long).
 */
export function encodeSimpleReply(
  errno: number,
  handle: bigint,
  out: Uint8Array = new Uint8Array(NBD_SIMPLE_REPLY_BYTES),
): Uint8Array {
  assert(
    out.length === NBD_SIMPLE_REPLY_BYTES,
    `a simple reply needs ${NBD_SIMPLE_REPLY_BYTES} bytes`,
  );
  const dv = view(out);
  dv.setUint32(0, NBD_SIMPLE_REPLY_MAGIC);
  dv.setUint32(4, errno);
  dv.setBigUint64(8, handle);
  return out;
}

/** Encodes a structured reply chunk header. */
export function encodeStructuredHeader(
  flags: number,
  type: number,
  handle: bigint,
  lengthBytes: number,
): Uint8Array {
  const out = new Uint8Array(NBD_STRUCTURED_REPLY_HEADER_BYTES);
  writeStructuredHeader(out, flags, type, handle, lengthBytes);
  return out;
}

function writeStructuredHeader(
  out: Uint8Array,
  flags: number,
  type: number,
  handle: bigint,
  lengthBytes: number,
): void {
  const dv = view(out);
  dv.setUint32(0, NBD_STRUCTURED_REPLY_MAGIC);
  dv.setUint16(4, flags);
  dv.setUint16(6, type);
  dv.setBigUint64(8, handle);
  dv.setUint32(16, lengthBytes);
}

/** Bytes of the header and offset of an `NBD_REPLY_TYPE_OFFSET_DATA` chunk. */
export const NBD_OFFSET_DATA_HEADER_BYTES = NBD_STRUCTURED_REPLY_HEADER_BYTES +
  NBD_OFFSET_DATA_PREFIX_BYTES;

/**
 * The header and offset of a final `NBD_REPLY_TYPE_OFFSET_DATA` chunk;
 * `dataBytes` bytes of data follow it. Encoded into `out` when given (it must
 * be {@linkcode NBD_OFFSET_DATA_HEADER_BYTES} long).
 */
export function encodeOffsetDataHeader(
  handle: bigint,
  offsetBytes: number,
  dataBytes: number,
  out: Uint8Array = new Uint8Array(NBD_OFFSET_DATA_HEADER_BYTES),
): Uint8Array {
  assert(dataBytes > 0 && dataBytes <= NBD_MAX_REQUEST_BYTES, `bad chunk length ${dataBytes}`);
  assert(out.length === NBD_OFFSET_DATA_HEADER_BYTES, "bad offset-data header buffer");
  writeStructuredHeader(
    out,
    NBD_REPLY_FLAG_DONE,
    NBD_REPLY_TYPE_OFFSET_DATA,
    handle,
    NBD_OFFSET_DATA_PREFIX_BYTES + dataBytes,
  );
  setU64FromNumber(view(out), NBD_STRUCTURED_REPLY_HEADER_BYTES, offsetBytes);
  return out;
}

/** A final `NBD_REPLY_TYPE_NONE` chunk. */
export function encodeStructuredDone(handle: bigint): Uint8Array {
  return encodeStructuredHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, handle, 0);
}

/** A final `NBD_REPLY_TYPE_ERROR` chunk with a message. */
export function encodeStructuredError(handle: bigint, errno: number, message: string): Uint8Array {
  assert(errno !== 0, "an error chunk needs a nonzero errno");
  const text = encodeStringBounded(message, NBD_ERROR_MESSAGE_BYTES_MAX);
  const out = new Uint8Array(NBD_STRUCTURED_REPLY_HEADER_BYTES + 6 + text.length);
  writeStructuredHeader(out, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handle, 6 + text.length);
  const dv = view(out);
  dv.setUint32(NBD_STRUCTURED_REPLY_HEADER_BYTES, errno);
  dv.setUint16(NBD_STRUCTURED_REPLY_HEADER_BYTES + 4, text.length);
  out.set(text, NBD_STRUCTURED_REPLY_HEADER_BYTES + 6);
  return out;
}

/** A decoded reply header, simple or structured (for clients and tests). */
export type ReplyHeader =
  | { kind: "simple"; errno: number; handle: bigint }
  | { kind: "structured"; flags: number; type: number; handle: bigint; lengthBytes: number };

/**
 * Decodes the reply header at the start of `bytes`: 16 bytes for a simple
 * reply, 20 for a structured chunk (see {@linkcode replyHeaderBytes}).
 *
 * @throws {SyntaxError} on an unknown magic or short input.
 */
export function decodeReplyHeader(bytes: Uint8Array): ReplyHeader {
  if (bytes.length < 4) throw new SyntaxError("reply header too short");
  const dv = view(bytes);
  const magic = dv.getUint32(0);
  if (magic === NBD_SIMPLE_REPLY_MAGIC) {
    if (bytes.length < NBD_SIMPLE_REPLY_BYTES) throw new SyntaxError("simple reply too short");
    return { kind: "simple", errno: dv.getUint32(4), handle: dv.getBigUint64(8) };
  }
  if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
    if (bytes.length < NBD_STRUCTURED_REPLY_HEADER_BYTES) {
      throw new SyntaxError("structured reply too short");
    }
    return {
      kind: "structured",
      flags: dv.getUint16(4),
      type: dv.getUint16(6),
      handle: dv.getBigUint64(8),
      lengthBytes: dv.getUint32(16),
    };
  }
  throw new SyntaxError(`bad reply magic 0x${magic.toString(16)}`);
}

/**
 * Bytes of the reply header that starts with `magic4` (its first 4 bytes).
 *
 * @throws {SyntaxError} on an unknown magic.
 */
export function replyHeaderBytes(magic4: Uint8Array): number {
  const magic = view(magic4).getUint32(0);
  if (magic === NBD_SIMPLE_REPLY_MAGIC) return NBD_SIMPLE_REPLY_BYTES;
  if (magic === NBD_STRUCTURED_REPLY_MAGIC) return NBD_STRUCTURED_REPLY_HEADER_BYTES;
  throw new SyntaxError(`bad reply magic 0x${magic.toString(16)}`);
}

// ---------------------------------------------------------------------------
// Request validation

/** What validation needs to know of the export and the session. */
export interface RequestContext {
  /** The export's size in bytes. */
  sizeBytes: number;
  /** The export refuses writes (and FUA was not advertised). */
  readOnly: boolean;
  /** Structured replies were agreed (so `NBD_CMD_FLAG_DF` was advertised). */
  structuredReplies: boolean;
  /** `base:allocation` was selected, so `NBD_CMD_BLOCK_STATUS` may be sent. */
  blockStatus?: boolean;
}

/**
 * Command flags a command accepts, as advertised by
 * {@linkcode transmissionFlags}: FUA on every command when `NBD_FLAG_SEND_FUA`
 * was sent (writable exports), DF on READ with structured replies, NO_HOLE
 * on WRITE_ZEROES.
 */
function allowedFlags(type: number, context: RequestContext): number {
  const fua = context.readOnly ? 0 : NBD_CMD_FLAG_FUA;
  switch (type) {
    case NBD_CMD_READ:
      return fua | (context.structuredReplies ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE_ZEROES:
      return fua | NBD_CMD_FLAG_NO_HOLE;
    case NBD_CMD_BLOCK_STATUS:
      return NBD_CMD_FLAG_REQ_ONE;
    default:
      return fua;
  }
}

/** A rejected request: the errno and a message for structured error replies and logs. */
export interface RequestRejection {
  /** The NBD errno to reply with. */
  errno: number;
  /** Why, for a structured error reply and the log. */
  message: string;
}

/**
 * Checks a request against the export and the session, before any I/O.
 * Returns `null` when it may be served, else the errno to reply with:
 *
 * - unknown command: `EINVAL`;
 * - write, trim or write zeroes on a read-only export: `EPERM`;
 * - unknown or inapplicable flag, zero length, or a READ or WRITE longer
 *   than {@linkcode NBD_MAX_REQUEST_BYTES}: `EINVAL`;
 * - READ or TRIM past the end: `EINVAL`; WRITE or WRITE_ZEROES past the
 *   end: `ENOSPC` (both as the spec's error values section says);
 * - FLUSH with a nonzero offset or length: `EINVAL` (they are reserved).
 *
 * `NBD_CMD_DISC` is never rejected.
 */
export function checkRequest(
  request: NbdRequest,
  context: RequestContext,
): RequestRejection | null {
  const { type, flags, offsetBytes, lengthBytes } = request;
  const name = commandName(type);
  if (type === NBD_CMD_DISC) return null;
  if (!(type in COMMAND_NAMES)) return { errno: NBD_EINVAL, message: `unknown ${name}` };
  if (type === NBD_CMD_BLOCK_STATUS && !context.blockStatus) {
    return { errno: NBD_EINVAL, message: `${name}: no metadata context was selected` };
  }
  const writes = type === NBD_CMD_WRITE || type === NBD_CMD_TRIM || type === NBD_CMD_WRITE_ZEROES;
  if (writes && context.readOnly) {
    return { errno: NBD_EPERM, message: `${name}: the export is read-only` };
  }
  const bad = flags & ~allowedFlags(type, context);
  if (bad !== 0) {
    return { errno: NBD_EINVAL, message: `${name}: invalid flags 0x${bad.toString(16)}` };
  }
  if (type === NBD_CMD_FLUSH) {
    if (offsetBytes !== 0 || lengthBytes !== 0) {
      return { errno: NBD_EINVAL, message: `${name}: offset and length must be zero` };
    }
    return null;
  }
  if (lengthBytes === 0) return { errno: NBD_EINVAL, message: `${name}: zero length` };
  if ((type === NBD_CMD_READ || type === NBD_CMD_WRITE) && lengthBytes > NBD_MAX_REQUEST_BYTES) {
    return {
      errno: NBD_EINVAL,
      message: `${name}: length ${lengthBytes} exceeds ${NBD_MAX_REQUEST_BYTES}`,
    };
  }
  if (offsetBytes > context.sizeBytes || lengthBytes > context.sizeBytes - offsetBytes) {
    const errno = type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
    return {
      errno,
      message:
        `${name}: ${offsetBytes}+${lengthBytes} is past the export size ${context.sizeBytes}`,
    };
  }
  return null;
}

// ---------------------------------------------------------------------------
// Metadata contexts and block status

/** The data of `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT`. */
export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

/**
 * Decodes a meta context option's data: export name (32-bit length, UTF-8),
 * number of queries, then each query (32-bit length, UTF-8).
 *
 * @throws {SyntaxError} on lengths that overrun the data, bad UTF-8, or
 *   more than {@linkcode NBD_META_CONTEXT_QUERIES_MAX} queries.
 */
export function decodeMetaContextRequest(data: Uint8Array): MetaContextRequest {
  const dv = view(data);
  let at = 0;
  const string = (what: string): string => {
    if (at + 4 > data.length) throw new SyntaxError(`meta context option: ${what} is truncated`);
    const length = dv.getUint32(at);
    at += 4;
    if (length > NBD_STRING_BYTES_MAX || at + length > data.length) {
      throw new SyntaxError(`meta context option: ${what} overruns the option`);
    }
    const text = strictDecoder.decode(data.subarray(at, at + length));
    at += length;
    return text;
  };
  const exportName = string("the export name");
  if (at + 4 > data.length) {
    throw new SyntaxError("meta context option: the query count is missing");
  }
  const count = dv.getUint32(at);
  at += 4;
  if (count > NBD_META_CONTEXT_QUERIES_MAX) {
    throw new SyntaxError(
      `meta context option: ${count} queries (at most ${NBD_META_CONTEXT_QUERIES_MAX})`,
    );
  }
  const queries: string[] = [];
  for (let i = 0; i < count; i++) queries.push(string(`query ${i}`));
  if (at !== data.length) throw new SyntaxError("meta context option: bytes after the last query");
  return { exportName, queries };
}

/** Encodes meta context option data (for clients and tests). */
export function encodeMetaContextRequest(request: MetaContextRequest): Uint8Array {
  const name = encoder.encode(request.exportName);
  const queries = request.queries.map((query) => encoder.encode(query));
  const out = new Uint8Array(
    8 + name.length + queries.reduce((sum, query) => sum + 4 + query.length, 0),
  );
  const dv = view(out);
  dv.setUint32(0, name.length);
  out.set(name, 4);
  let at = 4 + name.length;
  dv.setUint32(at, queries.length);
  at += 4;
  for (const query of queries) {
    dv.setUint32(at, query.length);
    out.set(query, at + 4);
    at += 4 + query.length;
  }
  return out;
}

/** Whether a query selects `base:allocation` (itself, or every context of `base:`). */
export function queriesBaseAllocation(query: string): boolean {
  return query === NBD_META_CONTEXT_BASE_ALLOCATION || query === "base:";
}

/** Data of an `NBD_REP_META_CONTEXT` reply: the context id, then its name. */
export function encodeMetaContextReplyData(id: number, name: string): Uint8Array {
  const nameBytes = encoder.encode(name);
  const out = new Uint8Array(4 + nameBytes.length);
  view(out).setUint32(0, id);
  out.set(nameBytes, 4);
  return out;
}

/** One extent of a block status reply. */
export interface BlockStatusExtent {
  lengthBytes: number;
  /** `NBD_STATE_*` flags. */
  flags: number;
}

/** Encodes a final `NBD_REPLY_TYPE_BLOCK_STATUS` chunk for context `id`. */
export function encodeBlockStatusReply(
  handle: bigint,
  id: number,
  extents: readonly BlockStatusExtent[],
): Uint8Array {
  const payloadBytes = 4 + 8 * extents.length;
  const out = new Uint8Array(NBD_STRUCTURED_REPLY_HEADER_BYTES + payloadBytes);
  out.set(
    encodeStructuredHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, handle, payloadBytes),
  );
  const dv = view(out);
  dv.setUint32(NBD_STRUCTURED_REPLY_HEADER_BYTES, id);
  extents.forEach((extent, index) => {
    const at = NBD_STRUCTURED_REPLY_HEADER_BYTES + 4 + 8 * index;
    dv.setUint32(at, extent.lengthBytes);
    dv.setUint32(at + 4, extent.flags);
  });
  return out;
}
