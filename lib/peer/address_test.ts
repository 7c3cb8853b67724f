import assert from "node:assert/strict";
import { formatPeerAddress, parsePeerAddress, PEER_PORT_DEFAULT } from "./address.ts";

Deno.test("address: parses host and port, with the default port", () => {
  assert.deepEqual(parsePeerAddress("tdp://10.0.0.5:40123"), { hostname: "10.0.0.5", port: 40123 });
  assert.deepEqual(parsePeerAddress("tdp://10.0.0.5"), {
    hostname: "10.0.0.5",
    port: PEER_PORT_DEFAULT,
  });
  assert.equal(PEER_PORT_DEFAULT, 40000);
  assert.deepEqual(parsePeerAddress("tdp://node-1.example.com:1/"), {
    hostname: "node-1.example.com",
    port: 1,
  });
  assert.deepEqual(parsePeerAddress("tdp://[::1]:65535"), { hostname: "::1", port: 65535 });
  assert.deepEqual(parsePeerAddress("tdp://[fe80::1%eth0]"), {
    hostname: "fe80::1%eth0",
    port: PEER_PORT_DEFAULT,
  });
  assert.deepEqual(parsePeerAddress("tdp://localhost:0", true), { hostname: "localhost", port: 0 });
});

Deno.test("address: malformed addresses are TypeErrors naming the problem", () => {
  for (
    const [address, why] of [
      ["10.0.0.5:40000", "scheme"],
      ["http://10.0.0.5:40000", "scheme"],
      ["TDP://10.0.0.5", "scheme"],
      ["tdp://", "host is missing"],
      ["tdp://:40000", "host is missing"],
      ["tdp://10.0.0.5:port", "bad port"],
      ["tdp://10.0.0.5:-1", "bad port"],
      ["tdp://10.0.0.5:400000", "bad port"],
      ["tdp://10.0.0.256", "IPv4"],
      ["tdp://::1", "brackets"],
      ["tdp://[::1", "unclosed"],
      ["tdp://[::1]x", "junk"],
      ["tdp://[nothex]:1", "IPv6"],
      ["tdp://user@host", "only a host"],
      ["tdp://host/path", "only a host"],
      ["tdp://host?x=1", "only a host"],
      ["tdp://ho st", "only a host"],
      ["tdp://-host", "host name"],
      ["tdp://host_name", "host name"],
      [`tdp://${"a.".repeat(130)}b`, "host name"],
    ] as const
  ) {
    assert.throws(() => parsePeerAddress(address), (error: Error) => {
      assert.ok(error instanceof TypeError, `${address}: ${error}`);
      assert.ok(error.message.includes(why), `${address}: ${error.message}`);
      assert.ok(error.message.includes(address), "the message quotes the address");
      return true;
    });
  }
});

Deno.test("address: ports out of range are RangeErrors; 0 only to listen", () => {
  assert.throws(() => parsePeerAddress("tdp://host:0"), RangeError);
  assert.throws(() => parsePeerAddress("tdp://host:65536"), RangeError);
  assert.throws(() => parsePeerAddress("tdp://host:65536", true), RangeError);
});

Deno.test("address: formatPeerAddress() is parsePeerAddress() reversed", () => {
  for (const [hostname, port] of [["127.0.0.1", 1], ["::1", 40000], ["peer.local", 7]] as const) {
    const address = formatPeerAddress(hostname, port);
    assert.deepEqual(parsePeerAddress(address), { hostname, port });
  }
  assert.equal(formatPeerAddress("::1", 5), "tdp://[::1]:5");
});
