/**
 * etcd client endpoints as users write them (`--etcd a:2379,b:2379`,
 * `http://a:2379`, `https://[::1]:2379`) and the normalized URLs the client
 * dials.
 *
 * @module
 */

/** The endpoint used when none is configured, as in the original. */
export const ETCD_ENDPOINT_DEFAULT = "127.0.0.1:2379";
/** The port assumed when an endpoint names none (etcd's client port). */
export const ETCD_CLIENT_PORT_DEFAULT = 2379;
/** Most endpoints one client accepts: an etcd cluster has at most a handful of members. */
export const ETCD_ENDPOINTS_MAX = 16;
/** Largest TCP port number. */
const PORT_MAX = 65_535;

/** `host:port`, with the host a name, an IPv4 address or a bracketed IPv6 address. */
const ENDPOINT_PATTERN =
  /^(?:(?<scheme>[a-zA-Z][a-zA-Z0-9+.-]*):\/\/)?(?<host>\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)(?::(?<port>[0-9]+))?\/?$/;

/** One parsed endpoint. */
export interface EtcdEndpoint {
  /** `http`, `https`, or null when the text named no scheme. */
  scheme: "http" | "https" | null;
  /** Host name or address; IPv6 addresses keep their brackets. */
  host: string;
  /** TCP port. */
  port: number;
}

/**
 * Parses one endpoint: `host`, `host:port`, `http://host:port` or
 * `https://host:port` (a trailing `/` is allowed). The port defaults to
 * {@linkcode ETCD_CLIENT_PORT_DEFAULT}.
 *
 * @throws {RangeError} on anything else.
 */
export function parseEtcdEndpoint(text: string): EtcdEndpoint {
  const match = ENDPOINT_PATTERN.exec(text.trim());
  const groups = match?.groups;
  if (groups === undefined || groups.host === undefined) {
    throw new RangeError(
      `Cannot use etcd endpoint ${JSON.stringify(text)}: expected host:port, ` +
        `http://host:port or https://host:port`,
    );
  }
  const scheme = groups.scheme?.toLowerCase();
  if (scheme !== undefined && scheme !== "http" && scheme !== "https") {
    throw new RangeError(
      `Cannot use etcd endpoint ${JSON.stringify(text)}: the scheme must be http or https`,
    );
  }
  const port = groups.port === undefined ? ETCD_CLIENT_PORT_DEFAULT : Number(groups.port);
  if (!Number.isSafeInteger(port) || port < 1 || port > PORT_MAX) {
    throw new RangeError(
      `Cannot use etcd endpoint ${JSON.stringify(text)}: the port must be in [1, ${PORT_MAX}]`,
    );
  }
  return { scheme: scheme ?? null, host: groups.host.toLowerCase(), port };
}

/**
 * Splits a comma-separated endpoint list (`a:2379,b:2379`), as `--etcd` and
 * the config file's `etcd` take it. Empty items are ignored.
 *
 * @throws {RangeError} when no endpoint remains.
 */
export function splitEtcdEndpoints(text: string): string[] {
  const endpoints = text.split(",").map((item) => item.trim()).filter((item) => item !== "");
  if (endpoints.length === 0) {
    throw new RangeError(`Cannot use etcd endpoints ${JSON.stringify(text)}: the list is empty`);
  }
  return endpoints;
}

/**
 * Normalizes endpoints to the URLs the client dials. An endpoint without a
 * scheme gets `https` when `secure` (TLS files are configured), else `http`.
 *
 * @param secure True when TLS files are configured.
 * @throws {RangeError} on a bad, duplicate or `http://` endpoint with TLS
 * files, on mixed schemes, on an empty list or one over {@linkcode ETCD_ENDPOINTS_MAX}.
 */
export function normalizeEtcdEndpoints(endpoints: readonly string[], secure: boolean): string[] {
  if (endpoints.length === 0 || endpoints.length > ETCD_ENDPOINTS_MAX) {
    throw new RangeError(
      `Cannot connect to etcd: expected 1 to ${ETCD_ENDPOINTS_MAX} endpoints, ` +
        `got ${endpoints.length}`,
    );
  }
  const parsed = endpoints.map(parseEtcdEndpoint);
  const schemes = new Set(parsed.map((endpoint) => endpoint.scheme ?? (secure ? "https" : "http")));
  if (schemes.size > 1) {
    throw new RangeError(
      `Cannot connect to etcd at ${endpoints.join(",")}: mixing http and https endpoints`,
    );
  }
  if (secure && schemes.has("http")) {
    throw new RangeError(
      `Cannot connect to etcd at ${endpoints.join(",")}: TLS files are set but an ` +
        `endpoint says http://`,
    );
  }
  const urls = parsed.map((endpoint) => {
    const scheme = endpoint.scheme ?? (secure ? "https" : "http");
    return `${scheme}://${endpoint.host}:${endpoint.port}`;
  });
  if (new Set(urls).size !== urls.length) {
    throw new RangeError(`Cannot connect to etcd at ${endpoints.join(",")}: an endpoint repeats`);
  }
  return urls;
}
