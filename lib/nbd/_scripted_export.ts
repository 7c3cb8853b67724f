/**
 * An {@linkcode NbdExport} wrapper for tests: records calls, holds them at a
 * gate, delays or fails them on demand. Test-only.
 *
 * @module
 */
import type { NbdExport, NbdWriteOptions, NbdWriteZeroesOptions } from "./export.ts";

/** The operations a {@linkcode ScriptedExport} sees. */
export type ScriptedOp = "read" | "write" | "flush" | "trim" | "writeZeroes";

/** Wraps an export with test controls. */
export class ScriptedExport implements NbdExport {
  readonly inner: NbdExport;
  /** Every call, e.g. `write 0+4096 fua`. */
  readonly calls: string[] = [];
  /** Milliseconds to delay an operation. */
  delayMs: (op: ScriptedOp, offsetBytes: number) => number = () => 0;
  /** An error to fail an operation with, or null. */
  failure: (op: ScriptedOp, offsetBytes: number) => Error | null = () => null;
  /** Operations started and not finished. */
  running = 0;
  /** Times `close` was called. */
  closeCount = 0;
  #gate: Promise<void> | null = null;
  #openGate: (() => void) | null = null;

  constructor(inner: NbdExport) {
    this.inner = inner;
  }

  get name(): string {
    return this.inner.name;
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get multiConn(): boolean {
    return this.inner.multiConn;
  }

  /** Holds every operation until {@linkcode ScriptedExport.open} is called. */
  hold(): void {
    this.#gate ??= new Promise((resolve) => this.#openGate = resolve);
  }

  /** Lets held operations run. */
  open(): void {
    this.#openGate?.();
    this.#gate = null;
    this.#openGate = null;
  }

  async #run<T>(op: ScriptedOp, offsetBytes: number, note: string, body: () => Promise<T>) {
    this.calls.push(note);
    this.running++;
    try {
      while (this.#gate !== null) await this.#gate;
      const delay = this.delayMs(op, offsetBytes);
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      const error = this.failure(op, offsetBytes);
      if (error !== null) throw error;
      return await body();
    } finally {
      this.running--;
    }
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    return this.#run(
      "read",
      offsetBytes,
      `read ${offsetBytes}+${lengthBytes}`,
      () => this.inner.read(offsetBytes, lengthBytes),
    );
  }

  write(offsetBytes: number, data: Uint8Array, options: NbdWriteOptions): Promise<void> {
    return this.#run(
      "write",
      offsetBytes,
      `write ${offsetBytes}+${data.length}${options.fua ? " fua" : ""}`,
      () => this.inner.write(offsetBytes, data, options),
    );
  }

  flush(): Promise<void> {
    return this.#run("flush", 0, "flush", () => this.inner.flush());
  }

  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.#run(
      "trim",
      offsetBytes,
      `trim ${offsetBytes}+${lengthBytes}`,
      () => this.inner.trim(offsetBytes, lengthBytes),
    );
  }

  writeZeroes(
    offsetBytes: number,
    lengthBytes: number,
    options: NbdWriteZeroesOptions,
  ): Promise<void> {
    return this.#run(
      "writeZeroes",
      offsetBytes,
      `writeZeroes ${offsetBytes}+${lengthBytes}${options.fua ? " fua" : ""}${
        options.noHole ? " noHole" : ""
      }`,
      () => this.inner.writeZeroes(offsetBytes, lengthBytes, options),
    );
  }

  close(): Promise<void> {
    this.closeCount++;
    return this.inner.close();
  }
}
