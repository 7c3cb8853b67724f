import assert from "node:assert/strict";
import {
  ETCD_ENDPOINTS_MAX,
  normalizeEtcdEndpoints,
  parseEtcdEndpoint,
  splitEtcdEndpoints,
} from "./etcd_endpoints.ts";

Deno.test("parseEtcdEndpoint() reads host:port with an optional scheme and default port", () => {
  assert.deepEqual(parseEtcdEndpoint("127.0.0.1:2379"), {
    scheme: null,
    host: "127.0.0.1",
    port: 2379,
  });
  assert.deepEqual(parseEtcdEndpoint("http://etcd-1.example.com:12379/"), {
    scheme: "http",
    host: "etcd-1.example.com",
    port: 12379,
  });
  assert.deepEqual(parseEtcdEndpoint(" HTTPS://[::1]:2379 "), {
    scheme: "https",
    host: "[::1]",
    port: 2379,
  });
  assert.deepEqual(parseEtcdEndpoint("etcd"), { scheme: null, host: "etcd", port: 2379 });
});

Deno.test("parseEtcdEndpoint() refuses other schemes, bad ports and paths", () => {
  for (
    const text of [
      "",
      "unix:///run/etcd.sock",
      "grpc://a:1",
      "a:0",
      "a:65536",
      "a:12x",
      "http://a:2379/v3",
      "a b:1",
      "::1:2379",
    ]
  ) {
    assert.throws(() => parseEtcdEndpoint(text), RangeError, JSON.stringify(text));
  }
});

Deno.test("splitEtcdEndpoints() splits the --etcd list and ignores empty items", () => {
  assert.deepEqual(splitEtcdEndpoints("a:2379, b:2379,,"), ["a:2379", "b:2379"]);
  assert.deepEqual(splitEtcdEndpoints("http://a:1"), ["http://a:1"]);
  assert.throws(() => splitEtcdEndpoints(" , "), RangeError);
});

Deno.test("normalizeEtcdEndpoints() picks the scheme from the TLS setting", () => {
  assert.deepEqual(normalizeEtcdEndpoints(["a:1", "http://b:2"], false), [
    "http://a:1",
    "http://b:2",
  ]);
  assert.deepEqual(normalizeEtcdEndpoints(["a:1", "https://b:2"], true), [
    "https://a:1",
    "https://b:2",
  ]);
  assert.deepEqual(normalizeEtcdEndpoints(["https://a"], false), ["https://a:2379"]);
  assert.throws(() => normalizeEtcdEndpoints(["http://a:1"], true), RangeError, "TLS over http");
  assert.throws(() => normalizeEtcdEndpoints(["http://a:1", "https://b:1"], false), RangeError);
  assert.throws(() => normalizeEtcdEndpoints(["a:1", "http://a:1"], false), RangeError, "repeat");
  assert.throws(() => normalizeEtcdEndpoints([], false), RangeError);
  const many = Array.from({ length: ETCD_ENDPOINTS_MAX + 1 }, (_, index) => `h${index}:1`);
  assert.throws(() => normalizeEtcdEndpoints(many, false), RangeError);
  assert.equal(normalizeEtcdEndpoints(many.slice(1), false).length, ETCD_ENDPOINTS_MAX);
});
