/**
 * The npm `etcd3` client as {@linkcode EtcdMetadata} configures it: TLS files
 * read from disk, a deadline on every unary call, and fault handling that
 * fails over between endpoints without keeping a restarted etcd out.
 *
 * Fault handling replaces `etcd3`'s defaults (a circuit breaker that shuts an
 * endpoint out for 5 s after three failures, and watch reconnects backing off
 * to 30 s):
 *
 * - An endpoint whose connection fails is skipped for
 *   {@linkcode ETCD_ENDPOINT_QUARANTINE_MS}, so the next call, keep-alive or
 *   watch goes to another endpoint at once instead of a random one.
 * - A unary call that fails with `UNAVAILABLE` is retried once per endpoint
 *   (each try on the next endpoint); nothing else is retried.
 * - A broken watch stream reconnects after 100 ms, doubling up to
 *   {@linkcode ETCD_WATCH_RECONNECT_DELAY_MS_MAX}.
 *
 * Deadlines and quarantines run on the real clock: they bound waits on the
 * network, while the injected clock of the service stamps metadata.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import tls from "node:tls";
import {
  type CallContext,
  Etcd3,
  GRPCUnavailableError,
  type IOptions,
  isRecoverableError,
} from "etcd3";
import { type Clock, SystemClock } from "../clock.ts";
import { normalizeEtcdEndpoints } from "./etcd_endpoints.ts";

/** Longest wait for the answer to one etcd request, in milliseconds. */
export const ETCD_REQUEST_TIMEOUT_MS = 5_000;
/** How long an endpoint whose connection failed is skipped, in milliseconds. */
export const ETCD_ENDPOINT_QUARANTINE_MS = 1_000;
/** First delay before a broken watch stream reconnects, in milliseconds. */
export const ETCD_WATCH_RECONNECT_DELAY_MS_MIN = 100;
/** Longest delay before a broken watch stream reconnects, in milliseconds. */
export const ETCD_WATCH_RECONNECT_DELAY_MS_MAX = 1_000;

/** The real clock, for network deadlines (never the injected, possibly manual, clock). */
export const NETWORK_CLOCK: Clock = new SystemClock();

/** TLS material for the etcd connection, as paths of PEM files. */
export interface EtcdTlsFiles {
  /** CA bundle that signed etcd's certificate; the system's roots when absent. */
  caFile?: string;
  /** Client certificate, for etcds that require one (`--client-cert-auth`). */
  certFile?: string;
  /** Key of the client certificate. */
  keyFile?: string;
}

/** Options of {@linkcode connectEtcd}. */
export interface EtcdConnectionOptions {
  /** Endpoints as users write them: `host:port`, `http://host:port`, `https://host:port`. */
  endpoints: readonly string[];
  /** TLS files; when set, endpoints without a scheme use https. */
  tls?: EtcdTlsFiles;
  /**
   * Deadline of each unary request, in milliseconds.
   * @default {ETCD_REQUEST_TIMEOUT_MS}
   */
  requestTimeoutMs?: number;
}

/** A configured client and the endpoints it dials. */
export interface EtcdConnection {
  client: Etcd3;
  /** Normalized endpoint URLs. */
  endpoints: string[];
}

type FaultHandling = NonNullable<IOptions["faultHandling"]>;
type GlobalPolicy = NonNullable<FaultHandling["global"]>;
type HostPolicy = ReturnType<NonNullable<FaultHandling["host"]>>;
type WatchBackoff = NonNullable<FaultHandling["watchBackoff"]>;

/** Subscribing to a policy event nobody fires. */
function noEvent(): { dispose(): void } {
  return { dispose() {} };
}

/** Thrown instead of dialling an endpoint that failed less than a quarantine ago. */
export class EndpointQuarantinedError extends Error {
  constructor(endpoint: string, cause: unknown) {
    super(
      `etcd endpoint ${endpoint} failed less than ${ETCD_ENDPOINT_QUARANTINE_MS} ms ago: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
    this.name = "EndpointQuarantinedError";
  }
}

/** Runs `fn` with a fresh context; a synchronous throw becomes a rejection. */
function callThrough<T>(
  fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T,
  signal: AbortSignal | undefined,
): Promise<T> {
  return new Promise<T>((resolve) =>
    resolve(fn({ signal: signal ?? new AbortController().signal }))
  );
}

/** Per-endpoint policy: skip the endpoint for a while after its connection failed. */
class EndpointQuarantine implements HostPolicy {
  declare readonly _altReturn: never;
  readonly onSuccess: GlobalPolicy["onSuccess"] = noEvent;
  readonly onFailure: GlobalPolicy["onFailure"] = noEvent;
  #endpoint: string;
  #untilMs = 0;
  #cause: unknown = null;

  constructor(endpoint: string) {
    this.#endpoint = endpoint;
  }

  async execute<T>(
    fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T,
    signal?: AbortSignal,
  ): Promise<T> {
    if (NETWORK_CLOCK.nowMs() < this.#untilMs) {
      throw new EndpointQuarantinedError(this.#endpoint, this.#cause);
    }
    try {
      return await callThrough(fn, signal);
    } catch (error) {
      // etcd3 also reports failed streams here (markFailed), so a dead
      // endpoint under a watch or keep-alive is skipped as well.
      if (error instanceof GRPCUnavailableError) {
        this.#untilMs = NETWORK_CLOCK.nowMs() + ETCD_ENDPOINT_QUARANTINE_MS;
        this.#cause = error;
      }
      throw error;
    }
  }
}

/** Global policy: retries `UNAVAILABLE` once per endpoint; etcd3 moves to the next each time. */
class EndpointFailover implements GlobalPolicy {
  declare readonly _altReturn: never;
  readonly onSuccess: GlobalPolicy["onSuccess"] = noEvent;
  readonly onFailure: GlobalPolicy["onFailure"] = noEvent;
  #attempts: number;

  constructor(attempts: number) {
    this.#attempts = attempts;
  }

  async execute<T>(
    fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T,
    signal?: AbortSignal,
  ): Promise<T> {
    let lastError: unknown;
    for (let attempt = 0; attempt < this.#attempts; attempt++) {
      try {
        return await callThrough(fn, signal);
      } catch (error) {
        if (!(error instanceof GRPCUnavailableError || error instanceof EndpointQuarantinedError)) {
          throw error;
        }
        lastError = error;
      }
    }
    throw lastError;
  }
}

/** Watch reconnect delays: 100 ms, doubling, at most {@linkcode ETCD_WATCH_RECONNECT_DELAY_MS_MAX}. */
class ReconnectBackoff implements WatchBackoff {
  readonly duration: number;

  constructor(durationMs: number) {
    this.duration = durationMs;
  }

  next(): ReconnectBackoff {
    return new ReconnectBackoff(
      Math.min(
        Math.max(this.duration * 2, ETCD_WATCH_RECONNECT_DELAY_MS_MIN),
        ETCD_WATCH_RECONNECT_DELAY_MS_MAX,
      ),
    );
  }
}

/** True for errors of the connection rather than of the request: retrying later may work. */
export function isConnectionError(error: unknown): boolean {
  return error instanceof EndpointQuarantinedError ||
    (error instanceof Error && isRecoverableError(error));
}

let ipServernamesDropped = false;

/**
 * grpc-js passes the endpoint's host as the TLS `servername`, IP addresses
 * included. RFC 6066 forbids an IP address there: Node ignores one (with a
 * deprecation warning), Deno's `node:tls` throws, so an etcd endpoint given
 * as an IP address could not use TLS. This wraps `node:tls` `connect`, once
 * per process, to drop an IP-address servername; the certificate is then
 * checked against the host, which is that same address.
 */
function dropIpServernames(): void {
  if (ipServernamesDropped) return;
  ipServernamesDropped = true;
  const connect = tls.connect;
  const wrapped = function (this: unknown, ...args: unknown[]) {
    const [options] = args;
    if (
      typeof options === "object" && options !== null && "servername" in options &&
      typeof options.servername === "string" && isIP(options.servername) !== 0
    ) {
      const { servername: _, ...rest } = options;
      args[0] = rest;
    }
    return (connect as (...args: unknown[]) => tls.TLSSocket).apply(this, args);
  };
  tls.connect = wrapped as typeof tls.connect;
}

async function readPem(what: string, path: string): Promise<Buffer> {
  try {
    return Buffer.from(await Deno.readFile(path));
  } catch (error) {
    // The message names the file, never its contents.
    if (error instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot read the etcd ${what} "${path}": it does not exist`);
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new Deno.errors.PermissionDenied(
        `Cannot read the etcd ${what} "${path}": permission denied`,
      );
    }
    throw error;
  }
}

/**
 * Reads the TLS files and builds a client for `options.endpoints`. Connects
 * lazily: the first request dials.
 *
 * @throws {RangeError} on bad endpoints, or a certificate without its key.
 * @throws {Deno.errors.NotFound} when a TLS file is missing.
 */
export async function connectEtcd(options: EtcdConnectionOptions): Promise<EtcdConnection> {
  const tls = options.tls;
  const secure = tls !== undefined &&
    (tls.caFile !== undefined || tls.certFile !== undefined || tls.keyFile !== undefined);
  const endpoints = normalizeEtcdEndpoints(options.endpoints, secure);
  if ((tls?.certFile === undefined) !== (tls?.keyFile === undefined)) {
    throw new RangeError(
      "Cannot connect to etcd: a client certificate needs its key and a key its " +
        "certificate (set both --etcd-cert-file and --etcd-key-file)",
    );
  }
  const requestTimeoutMs = options.requestTimeoutMs ?? ETCD_REQUEST_TIMEOUT_MS;
  if (!Number.isSafeInteger(requestTimeoutMs) || requestTimeoutMs <= 0) {
    throw new RangeError(
      `Cannot connect to etcd as 'requestTimeoutMs' must be a positive integer: ` +
        `current value is ${requestTimeoutMs}`,
    );
  }
  let credentials: IOptions["credentials"];
  if (secure) {
    dropIpServernames();
    credentials = {
      // grpc uses the system's roots when no CA is given; etcd3's type insists on one.
      rootCertificate: tls?.caFile === undefined
        ? undefined as unknown as Buffer
        : await readPem("CA file", tls.caFile),
      ...(tls?.certFile === undefined ? {} : {
        certChain: await readPem("certificate file", tls.certFile),
        privateKey: await readPem("key file", tls.keyFile!),
      }),
    };
  }
  const client = new Etcd3({
    hosts: endpoints,
    ...(credentials === undefined ? {} : { credentials }),
    defaultCallOptions: (context: CallContext) =>
      context.isStream ? {} : { deadline: NETWORK_CLOCK.nowMs() + requestTimeoutMs },
    faultHandling: {
      host: (endpoint: string) => new EndpointQuarantine(endpoint),
      global: new EndpointFailover(endpoints.length),
      watchBackoff: new ReconnectBackoff(0),
    },
  });
  return { client, endpoints };
}
