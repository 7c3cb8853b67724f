/**
 * How errors cross the wire: the server turns what its store threw into a
 * reply status and a short message; the client turns them back into the
 * same typed errors.
 *
 * @module
 */
import { AssertionError } from "../assert.ts";
import {
  BlockCorruptError,
  BlockNotFoundError,
  OutOfSpaceError,
  PeerUnavailableError,
} from "../errors.ts";
import { PeerStatus } from "./frame.ts";

/**
 * The status that reports `error` to the client.
 *
 * @throws {AssertionError} rethrown: a bug is never reported as a status.
 */
export function statusForError(error: unknown): PeerStatus {
  if (error instanceof AssertionError) throw error;
  if (error instanceof BlockNotFoundError) return PeerStatus.notFound;
  if (error instanceof BlockCorruptError) return PeerStatus.corrupt;
  if (error instanceof OutOfSpaceError) return PeerStatus.outOfSpace;
  if (
    error instanceof RangeError || error instanceof TypeError || error instanceof SyntaxError
  ) {
    return PeerStatus.badRequest;
  }
  return PeerStatus.internal;
}

/** The name of a status, for messages. */
export function statusName(status: number): string {
  switch (status) {
    case PeerStatus.ok:
      return "OK";
    case PeerStatus.notFound:
      return "NOT_FOUND";
    case PeerStatus.corrupt:
      return "CORRUPT";
    case PeerStatus.outOfSpace:
      return "OUT_OF_SPACE";
    case PeerStatus.badRequest:
      return "BAD_REQUEST";
    case PeerStatus.internal:
      return "INTERNAL";
    case PeerStatus.shuttingDown:
      return "SHUTTING_DOWN";
    case PeerStatus.damaged:
      return "DAMAGED";
    default:
      return `status ${status}`;
  }
}

/**
 * The error a client throws for a failed reply. `message` is the server's;
 * `address` prefixes it. An unknown status (from a newer server) is an
 * internal failure.
 */
export function errorForStatus(status: number, message: string, address: string): Error {
  const text = `${address}: ${message}`;
  switch (status) {
    case PeerStatus.notFound:
      return new BlockNotFoundError(text);
    case PeerStatus.corrupt:
      return new BlockCorruptError(text);
    case PeerStatus.outOfSpace:
      return new OutOfSpaceError(text);
    case PeerStatus.badRequest:
      return new RangeError(`${address} refused the request: ${message}`);
    default:
      return new PeerUnavailableError(`${text} (${statusName(status)})`);
  }
}
