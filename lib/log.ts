/**
 * Logging for the daemons: one line per event on stderr, with a level.
 * Secrets are never passed to it.
 *
 * @module
 */

/** Log levels, most severe first. */
export type LogLevel = "error" | "warn" | "info" | "debug";
const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** A logger. */
export interface Logger {
  log(level: LogLevel, message: string): void;
}

/** A logger that writes `LEVEL message` lines to stderr at or above `level`. */
export function stderrLogger(level: LogLevel, component: string): Logger {
  return {
    log(at, message) {
      if (RANK[at] > RANK[level]) return;
      console.error(`${new Date().toISOString()} ${at.toUpperCase()} ${component}: ${message}`);
    },
  };
}

/** A logger that drops everything. */
export const silentLogger: Logger = { log() {} };
