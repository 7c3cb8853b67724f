import { testTransport } from "./_transport_conformance.ts";
import { TcpTransport } from "./tcp_transport.ts";

testTransport("tcp", ({ blockSizeBytes }) => ({
  transport: new TcpTransport({ blockSizeBytes }),
  listenAddress: () => "tdp://127.0.0.1:0",
}));
