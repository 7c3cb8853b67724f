/**
 * The fixed newstyle handshake, server side: greeting, client flags, then
 * option haggling until the client chooses an export (`NBD_OPT_GO`,
 * `NBD_OPT_EXPORT_NAME`), aborts, or breaks the protocol.
 *
 * Encoding and decoding are in `protocol.ts`; this file only sequences them
 * over a {@linkcode ByteReader} and a {@linkcode SerialWriter}.
 *
 * @module
 */
import type { ByteReader } from "./byte_reader.ts";
import {
  errorMessage,
  type NbdExport,
  type NbdExportProvider,
  optionErrorForOpenError,
} from "./export.ts";
import type { NbdLogger } from "./log.ts";
import {
  decodeClientFlags,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  decodeString,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoName,
  encodeMetaContextReplyData,
  encodeOptionError,
  encodeOptionReply,
  encodeServerReplyData,
  NBD_BASE_ALLOCATION_ID,
  NBD_BLOCK_SIZE_MIN_BYTES,
  NBD_BLOCK_SIZE_PREFERRED_BYTES,
  NBD_CLIENT_FLAGS_BYTES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_NAME,
  NBD_MAX_REQUEST_BYTES,
  NBD_META_CONTEXT_BASE_ALLOCATION,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_OPTION_HEADER_BYTES,
  NBD_OPTION_LENGTH_BYTES_MAX,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  optionName,
  queriesBaseAllocation,
  transmissionFlags,
} from "./protocol.ts";
import type { SerialWriter } from "./serial_writer.ts";

/**
 * Most options one handshake may send before the server hangs up. Real
 * clients send fewer than ten; this stops a client from holding a
 * connection in option haggling forever.
 */
export const HANDSHAKE_OPTIONS_MAX = 1024;

/** What the handshake agreed on, when the client entered transmission. */
export interface HandshakeResult {
  /** The open export; the caller must close it. */
  export: NbdExport;
  /** Whether `NBD_OPT_STRUCTURED_REPLY` was agreed. */
  structuredReplies: boolean;
  /** The transmission flags the client was sent. */
  transmissionFlags: number;
  /** Whether `base:allocation` was selected for this export (`NBD_CMD_BLOCK_STATUS` allowed). */
  blockStatus: boolean;
}

/** What the handshake needs from the server. */
export interface HandshakeContext {
  /** Where exports come from. */
  provider: NbdExportProvider;
  /** True once the server is closing: options are refused with `NBD_REP_ERR_SHUTDOWN`. */
  isShuttingDown(): boolean;
  /** Receives log entries. */
  log: NbdLogger;
}

/**
 * Runs the server side of the handshake.
 *
 * Resolves to the agreed export, or `null` when the client aborted or left
 * cleanly (or an `NBD_OPT_EXPORT_NAME` named no usable export): the caller
 * then closes the connection.
 *
 * @throws {SyntaxError} on a protocol violation (bad magic, unknown client
 * flags, oversized option); the caller closes the connection.
 * @throws {Deno.errors.UnexpectedEof} when the client leaves mid-message.
 */
export async function negotiate(
  reader: ByteReader,
  writer: SerialWriter,
  context: HandshakeContext,
): Promise<HandshakeResult | null> {
  await writer.write([encodeGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)]);
  const flagBytes = await reader.readView(NBD_CLIENT_FLAGS_BYTES);
  if (flagBytes === null) return null;
  const { noZeroes } = decodeClientFlags(flagBytes);
  let structuredReplies = false;
  /** The export `base:allocation` was selected for by the last `NBD_OPT_SET_META_CONTEXT`. */
  let baseAllocationFor: string | null = null;

  for (let count = 0; count < HANDSHAKE_OPTIONS_MAX; count++) {
    const headerBytes = await reader.readView(NBD_OPTION_HEADER_BYTES);
    if (headerBytes === null) return null;
    const { option, lengthBytes } = decodeOptionHeader(headerBytes);
    if (lengthBytes > NBD_OPTION_LENGTH_BYTES_MAX) {
      throw new SyntaxError(
        `${optionName(option)} data of ${lengthBytes} bytes exceeds ${NBD_OPTION_LENGTH_BYTES_MAX}`,
      );
    }
    const data = await reader.readCopy(lengthBytes);
    if (data === null) throw new Deno.errors.UnexpectedEof("option data missing");
    const reply = (type: number, body?: Uint8Array) =>
      writer.write([encodeOptionReply(option, type, body)]);
    const fail = (type: number, message: string) =>
      writer.write([encodeOptionError(option, type, message)]);

    if (option === NBD_OPT_ABORT) {
      // The client may already be gone; the reply is a courtesy.
      await reply(NBD_REP_ACK).catch(() => {});
      return null;
    }
    if (context.isShuttingDown()) {
      if (option === NBD_OPT_EXPORT_NAME) return null;
      await fail(NBD_REP_ERR_SHUTDOWN, "the server is shutting down");
      continue;
    }

    switch (option) {
      case NBD_OPT_EXPORT_NAME: {
        let name: string;
        try {
          name = decodeString(data);
        } catch (error) {
          context.log({ level: "warn", message: `${optionName(option)}: bad name`, error });
          return null;
        }
        const opened = await openExport(context, name);
        if (!opened.ok) return null; // No error reply exists for this option.
        const flags = transmissionFlags(opened.export, structuredReplies);
        try {
          await writer.write([encodeExportNameReply(opened.export.sizeBytes, flags, noZeroes)]);
        } catch (error) {
          await closeQuietly(opened.export, context);
          throw error;
        }
        return {
          export: opened.export,
          structuredReplies,
          transmissionFlags: flags,
          blockStatus: structuredReplies && baseAllocationFor === name,
        };
      }

      case NBD_OPT_LIST: {
        if (data.length !== 0) {
          await fail(NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
          break;
        }
        let names: string[];
        try {
          names = await context.provider.list();
        } catch (error) {
          await fail(NBD_REP_ERR_POLICY, `cannot list exports: ${errorMessage(error)}`);
          break;
        }
        for (const name of names) await reply(NBD_REP_SERVER, encodeServerReplyData(name));
        await reply(NBD_REP_ACK);
        break;
      }

      case NBD_OPT_INFO:
      case NBD_OPT_GO: {
        let request;
        try {
          request = decodeInfoRequest(data);
        } catch (error) {
          await fail(NBD_REP_ERR_INVALID, errorMessage(error));
          break;
        }
        const opened = await openExport(context, request.name);
        if (!opened.ok) {
          await fail(opened.replyType, opened.message);
          break;
        }
        const exp = opened.export;
        const flags = transmissionFlags(exp, structuredReplies);
        try {
          await reply(NBD_REP_INFO, encodeInfoExport(exp.sizeBytes, flags));
          await reply(
            NBD_REP_INFO,
            encodeInfoBlockSize(
              NBD_BLOCK_SIZE_MIN_BYTES,
              NBD_BLOCK_SIZE_PREFERRED_BYTES,
              NBD_MAX_REQUEST_BYTES,
            ),
          );
          if (request.infos.includes(NBD_INFO_NAME)) {
            await reply(NBD_REP_INFO, encodeInfoName(exp.name));
          }
          await reply(NBD_REP_ACK);
        } catch (error) {
          await closeQuietly(exp, context);
          throw error;
        }
        if (option === NBD_OPT_GO) {
          return {
            export: exp,
            structuredReplies,
            transmissionFlags: flags,
            blockStatus: structuredReplies && baseAllocationFor === request.name,
          };
        }
        await closeQuietly(exp, context);
        break;
      }

      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT: {
        const set = option === NBD_OPT_SET_META_CONTEXT;
        if (set && !structuredReplies) {
          await fail(
            NBD_REP_ERR_INVALID,
            "NBD_OPT_SET_META_CONTEXT needs structured replies first",
          );
          break;
        }
        let request;
        try {
          request = decodeMetaContextRequest(data);
        } catch (error) {
          await fail(NBD_REP_ERR_INVALID, errorMessage(error));
          break;
        }
        // Listing with no query lists every context; otherwise a query must name it.
        const matches = (!set && request.queries.length === 0) ||
          request.queries.some(queriesBaseAllocation);
        if (set) baseAllocationFor = matches ? request.exportName : null;
        if (matches) {
          await reply(
            NBD_REP_META_CONTEXT,
            encodeMetaContextReplyData(NBD_BASE_ALLOCATION_ID, NBD_META_CONTEXT_BASE_ALLOCATION),
          );
        }
        await reply(NBD_REP_ACK);
        break;
      }

      case NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) {
          await fail(NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
          break;
        }
        structuredReplies = true;
        await reply(NBD_REP_ACK);
        break;

      default:
        await fail(NBD_REP_ERR_UNSUP, `${optionName(option)} is not supported`);
    }
  }
  throw new SyntaxError(`more than ${HANDSHAKE_OPTIONS_MAX} options`);
}

type Opened =
  | { ok: true; export: NbdExport }
  | { ok: false; replyType: number; message: string };

async function openExport(context: HandshakeContext, name: string): Promise<Opened> {
  try {
    return { ok: true, export: await context.provider.open(name) };
  } catch (error) {
    const replyType = optionErrorForOpenError(error);
    context.log({
      level: "info",
      message: `open of export ${JSON.stringify(name)} refused`,
      error,
    });
    return { ok: false, replyType, message: errorMessage(error) };
  }
}

async function closeQuietly(exp: NbdExport, context: HandshakeContext): Promise<void> {
  try {
    await exp.close();
  } catch (error) {
    context.log({ level: "warn", message: `close of export ${exp.name} failed`, error });
  }
}
