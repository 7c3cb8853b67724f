/**
 * The NBD server's logging hook: a callback the embedding program supplies,
 * so the library neither prints nor picks a logging framework.
 *
 * @module
 */

/** How much a log entry matters. */
export type NbdLogLevel = "debug" | "info" | "warn" | "error";

/** One log entry. */
export interface NbdLogEntry {
  /** How much the entry matters. */
  level: NbdLogLevel;
  /** What happened. */
  message: string;
  /** The client's address, `host:port`, for entries about one connection. */
  peer?: string;
  /** The error behind the entry, if any. */
  error?: unknown;
}

/** Receives the server's log entries; must not throw. */
export type NbdLogger = (entry: NbdLogEntry) => void;

/** A logger that drops everything. */
export const silentLogger: NbdLogger = () => {};

/** A logger that adds `peer` to every entry and forwards it to `logger`. */
export function withPeer(logger: NbdLogger, peer: string): NbdLogger {
  return (entry) => logger({ ...entry, peer });
}
