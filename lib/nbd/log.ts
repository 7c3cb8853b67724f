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

/**
 * One line for a log entry: `peer: message: error` (the peer and the error's
 * first line when present).
 */
export function formatNbdLogEntry(entry: NbdLogEntry): string {
  const peer = entry.peer ? `${entry.peer}: ` : "";
  if (entry.error === undefined) return `${peer}${entry.message}`;
  const text = entry.error instanceof Error ? entry.error.message : String(entry.error);
  const line = text.split("\n", 1)[0] || (entry.error as Error)?.name || "error";
  return `${peer}${entry.message}: ${line}`;
}

/** A logger that drops everything. */
export const silentLogger: NbdLogger = () => {};

/** A logger that adds `peer` to every entry and forwards it to `logger`. */
export function withPeer(logger: NbdLogger, peer: string): NbdLogger {
  return (entry) => logger({ ...entry, peer });
}
