/**
 * Peer addresses of the TCP transport: `tdp://host:port`, where host is a
 * hostname, an IPv4 address or a bracketed IPv6 address, and the port
 * defaults to {@linkcode PEER_PORT_DEFAULT}.
 *
 * @module
 */

/** The URL scheme of the peer protocol (the original's `tdp`, Torus Data Protocol). */
export const PEER_ADDRESS_SCHEME = "tdp";
/** Default TCP port of the peer protocol: the original's 40000. */
export const PEER_PORT_DEFAULT = 40000;
/** Largest TCP port. */
export const PEER_PORT_MAX = 65535;
/** Longest host name, in characters (RFC 1035). */
export const PEER_HOSTNAME_LENGTH_MAX = 253;

/** A parsed peer address. */
export interface PeerAddress {
  /** Host name or IP address, without brackets. */
  hostname: string;
  /** TCP port; 0 only when parsed for listening. */
  port: number;
}

const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const IPV6 = /^[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?$/;

/**
 * Parses `tdp://host[:port]`.
 *
 * @param forListening allows port 0 (the system picks a free port).
 * @throws {TypeError} when `address` is not a `tdp://` address.
 * @throws {RangeError} when the port is outside [1, 65535] ([0, 65535] to listen).
 *
 * @example Usage
 * ```ts
 * import { parsePeerAddress } from "./address.ts";
 * const { hostname, port } = parsePeerAddress("tdp://10.0.0.5");
 * if (hostname !== "10.0.0.5" || port !== 40000) throw new Error("wrong parse");
 * ```
 */
export function parsePeerAddress(address: string, forListening = false): PeerAddress {
  const bad = (why: string) =>
    new TypeError(
      `Cannot use peer address "${address}": ${why} (expected ${PEER_ADDRESS_SCHEME}://host:port)`,
    );
  if (typeof address !== "string") throw bad("not a string");
  const prefix = `${PEER_ADDRESS_SCHEME}://`;
  if (!address.startsWith(prefix)) throw bad(`the scheme must be ${PEER_ADDRESS_SCHEME}://`);
  let rest = address.slice(prefix.length);
  if (rest.endsWith("/")) rest = rest.slice(0, -1);
  if (/[/?#@\s]/.test(rest)) throw bad("only a host and a port are allowed");
  let hostname: string;
  let portText: string | undefined;
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close < 0) throw bad("unclosed [ of an IPv6 address");
    hostname = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) throw bad("junk after the IPv6 address");
    portText = after === "" ? undefined : after.slice(1);
    if (!hostname.includes(":") || !IPV6.test(hostname)) throw bad("bad IPv6 address");
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon >= 0 && rest.indexOf(":") !== colon) throw bad("an IPv6 address needs brackets");
    hostname = colon < 0 ? rest : rest.slice(0, colon);
    portText = colon < 0 ? undefined : rest.slice(colon + 1);
    if (hostname === "") throw bad("the host is missing");
    const ipv4 = IPV4.exec(hostname);
    if (ipv4 !== null) {
      if (ipv4.slice(1).some((part) => Number(part) > 255)) throw bad("bad IPv4 address");
    } else if (
      hostname.length > PEER_HOSTNAME_LENGTH_MAX ||
      !hostname.split(".").every((label) => HOST_LABEL.test(label))
    ) {
      throw bad("bad host name");
    }
  }
  let port = PEER_PORT_DEFAULT;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText)) throw bad(`bad port "${portText}"`);
    port = Number(portText);
  }
  const min = forListening ? 0 : 1;
  if (port < min || port > PEER_PORT_MAX) {
    throw new RangeError(
      `Cannot use peer address "${address}": port ${port} is outside [${min}, ${PEER_PORT_MAX}]`,
    );
  }
  return { hostname, port };
}

/**
 * Formats a host and port as `tdp://host:port` (IPv6 in brackets).
 *
 * @example Usage
 * ```ts
 * import { formatPeerAddress } from "./address.ts";
 * if (formatPeerAddress("::1", 40000) !== "tdp://[::1]:40000") throw new Error("wrong format");
 * ```
 */
export function formatPeerAddress(hostname: string, port: number): string {
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return `${PEER_ADDRESS_SCHEME}://${host}:${port}`;
}
