/**
 * Peers: how a node reaches the block stores of the other nodes of its
 * cluster. {@linkcode Transport} is the contract (`transport.ts`); the TCP
 * implementation speaks the peer protocol, a pipelined binary protocol in the
 * spirit of the original Torus's TDP (`Documentation/peer_protocol.md`).
 *
 * - `transport.ts`: the `Transport`, `PeerClient` and `PeerListener` contract.
 * - `tcp_transport.ts`: {@linkcode TcpTransport}, `tdp://host:port` peers over TCP.
 * - `peer_server.ts`: {@linkcode PeerServer}, serves one `BlockStore`.
 * - `peer_client.ts`: {@linkcode TcpPeerClient}, one pipelined connection to a peer.
 * - `client_checks.ts`: the argument checks and reply verification every client
 *   shares (the TCP client and the memory transport's).
 * - `frame.ts`: the wire format as pure encoders and decoders.
 * - `status.ts`: how errors cross the wire.
 * - `address.ts`: parsing and printing `tdp://` addresses.
 *
 * @example Usage
 * ```ts ignore
 * import { TcpTransport } from "./mod.ts";
 * const transport = new TcpTransport({ blockSizeBytes: 512 * 1024, nodeUuid });
 * const listener = await transport.listen("tdp://0.0.0.0:40000", store);
 * const peer = transport.dial("tdp://10.0.0.5:40000");
 * const { data, sectorCrcs } = await peer.readBlock(ref);
 * ```
 *
 * @module
 */
export type {
  PeerCallOptions,
  PeerClient,
  PeerListener,
  PeerListenerStats,
  Transport,
} from "./transport.ts";
export {
  formatPeerAddress,
  parsePeerAddress,
  PEER_ADDRESS_SCHEME,
  PEER_PORT_DEFAULT,
  type PeerAddress,
} from "./address.ts";
export {
  PEER_ERROR_MESSAGE_BYTES_MAX,
  PEER_FRAME_HEADER_BYTES,
  PEER_HAS_BLOCKS_BATCH_MAX,
  PEER_HELLO_BYTES,
  PEER_PROTOCOL_VERSION,
  PEER_PROTOCOL_VERSION_MIN,
} from "./frame.ts";
export {
  PEER_CLIENT_QUEUED_CALLS_MAX,
  PEER_CLIENT_REQUESTS_IN_FLIGHT_MAX,
  PEER_DELETE_TIMEOUT_MS,
  PEER_DIAL_TIMEOUT_MS,
  PEER_FLUSH_TIMEOUT_MS,
  PEER_HAS_BLOCKS_TIMEOUT_MS,
  PEER_KEEPALIVE_INTERVAL_MS,
  PEER_PING_TIMEOUT_MS,
  PEER_READ_TIMEOUT_MS,
  PEER_RECONNECT_BACKOFF_MAX_MS,
  PEER_RECONNECT_BACKOFF_MIN_MS,
  PEER_WRITE_TIMEOUT_MS,
  type PeerClientLimits,
  TcpPeerClient,
  type TcpPeerClientOptions,
} from "./peer_client.ts";
export {
  PEER_SERVER_BUFFERED_BYTES_MAX,
  PEER_SERVER_CLOSE_TIMEOUT_MS,
  PEER_SERVER_CONNECTION_BUFFERED_BYTES_MAX,
  PEER_SERVER_CONNECTIONS_MAX,
  PEER_SERVER_HANDSHAKE_TIMEOUT_MS,
  PEER_SERVER_IDLE_TIMEOUT_MS,
  PEER_SERVER_REQUESTS_IN_FLIGHT_MAX,
  PEER_SERVER_WRITE_STALL_TIMEOUT_MS,
  PeerServer,
  type PeerServerLimits,
  type PeerServerOptions,
  type PeerServerStats,
} from "./peer_server.ts";
export { TcpTransport, type TcpTransportOptions } from "./tcp_transport.ts";
