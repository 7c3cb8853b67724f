import assert from "node:assert/strict";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { ManualClock } from "../clock.ts";
import { MetadataUnavailableError } from "../errors.ts";
import { RingSchema } from "../models/torus_pb.ts";
import type { RingRecord } from "./metadata_service.ts";
import { makeTestPki, startEtcd } from "./_etcd_server.ts";
import { EtcdMetadata, type EtcdMetadataOptions } from "./etcd_metadata.ts";

const GLOBAL = { blockSizeBytes: 4096, defaultBlockSpec: "crc,base" };
const START_MS = 1_700_000_000_000;

function ring(version: number): RingRecord {
  return { version, bytes: toBinary(RingSchema, create(RingSchema, { type: 4, version })) };
}

/** A loopback port nothing listens on (connections are refused). */
function deadPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * A loopback endpoint that accepts connections and closes them at once: an
 * etcd that is there but broken. Counts the connections.
 */
function brokenEndpoint(): Disposable & { endpoint: string; connections(): number } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  const accepting = (async () => {
    for await (const connection of listener) {
      connections++;
      connection.close();
    }
  })();
  return {
    endpoint: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    connections: () => connections,
    [Symbol.dispose]() {
      listener.close();
      void accepting;
    },
  };
}

/** Runs a little of everything: unary calls, a lease keep-alive stream and a watch. */
async function exercise(metadata: EtcdMetadata, rounds: number): Promise<void> {
  const seen: number[] = [];
  const stop = metadata.watchRing((next) => seen.push(next.version));
  const start = (await metadata.getRing()).version;
  for (let round = 0; round < rounds; round++) {
    const volume = await metadata.createVolume(`vol-${start}-${round}`, 1 << 20);
    const lease = await metadata.grantLease(5_000);
    await metadata.renewLease(lease);
    const token = await metadata.lockVolume(volume.id, lease);
    await metadata.unlockVolume(token);
    await metadata.setRing(ring(start + round + 1));
    await metadata.revokeLease(lease);
  }
  await metadata.syncRingWatchers();
  stop();
  assert.deepEqual(seen, Array.from({ length: rounds }, (_, index) => start + index + 1));
}

Deno.test("EtcdMetadata: with a dead or broken endpoint among several, every call fails over", async () => {
  await using etcd = await startEtcd();
  using broken = brokenEndpoint();
  const dead = `http://127.0.0.1:${deadPort()}`;
  const clock = new ManualClock(START_MS);
  const first = await EtcdMetadata.open({ endpoints: etcd.endpoints, clock, keyPrefix: "/fo/" });
  await first.initialize(GLOBAL, ring(1));
  await first.close();
  const lists = [[dead, etcd.endpoint], [etcd.endpoint, dead], [
    broken.endpoint,
    dead,
    etcd.endpoint,
  ]];
  for (const endpoints of lists) {
    const metadata = await EtcdMetadata.open({ endpoints, clock, keyPrefix: "/fo/" });
    try {
      assert.deepEqual(metadata.endpoints, endpoints);
      // etcd3 picks endpoints in random order: enough rounds to start on each.
      await exercise(metadata, 8);
    } finally {
      await metadata.close();
    }
  }
  assert.ok(broken.connections() > 0, "the broken endpoint was tried");
});

Deno.test("EtcdMetadata.open() with no endpoint answering fails naming every endpoint", async () => {
  using broken = brokenEndpoint();
  const dead = `http://127.0.0.1:${deadPort()}`;
  const startMs = performance.now();
  await assert.rejects(
    EtcdMetadata.open({ endpoints: [dead, broken.endpoint], clock: new ManualClock(0) }),
    (error: unknown) => {
      assert.ok(error instanceof MetadataUnavailableError, String(error));
      assert.match(error.message, /^Cannot connect: etcd at /);
      assert.ok(error.message.includes(`${dead}, ${broken.endpoint}`), error.message);
      assert.ok(!error.message.includes("\n"), "one line");
      return true;
    },
  );
  assert.ok(performance.now() - startMs < 5_000, "refused connections fail fast");
});

Deno.test("EtcdMetadata over TLS: CA and client certificate work; wrong trust fails clearly", async () => {
  await using etcd = await startEtcd({ tls: true });
  const pki = etcd.tls!;
  const clock = new ManualClock(START_MS);
  const endpoint = `127.0.0.1:${etcd.clientPort}`;
  const tls = { caFile: pki.caFile, certFile: pki.certFile, keyFile: pki.keyFile };
  const metadata = await EtcdMetadata.open({ endpoints: [endpoint], tls, clock });
  try {
    assert.deepEqual(metadata.endpoints, [`https://${endpoint}`], "TLS files imply https");
    await metadata.initialize(GLOBAL, ring(1));
    await exercise(metadata, 2);
  } finally {
    await metadata.close();
  }

  const other = await makeTestPki(join(etcd.dataDir, "..", "other-pki"), "other");
  const refusals: [string, Partial<EtcdMetadataOptions>, RegExp][] = [
    ["a CA that did not sign the server", {
      tls: { ...tls, caFile: other.caFile },
    }, /certificate|issuer|verify/i],
    ["no client certificate", { tls: { caFile: pki.caFile } }, /.+/],
    ["a client certificate of another CA", {
      tls: { caFile: pki.caFile, certFile: other.certFile, keyFile: other.keyFile },
    }, /.+/],
    ["plain http", { endpoints: [`http://${endpoint}`] }, /.+/],
  ];
  for (const [what, options, detail] of refusals) {
    await assert.rejects(
      EtcdMetadata.open({ endpoints: [endpoint], clock, ...options }),
      (error: unknown) => {
        assert.ok(error instanceof MetadataUnavailableError, `${what}: ${error}`);
        assert.ok(error.message.includes(`127.0.0.1:${etcd.clientPort}`), error.message);
        assert.match(error.message, detail, `${what}: ${error.message}`);
        return true;
      },
      what,
    );
  }
});

Deno.test("EtcdMetadata.open() refuses bad TLS settings before dialling", async () => {
  const clock = new ManualClock(0);
  const endpoints = ["127.0.0.1:1"];
  await assert.rejects(
    EtcdMetadata.open({ endpoints, clock, tls: { caFile: "/nonexistent/ca.pem" } }),
    (error: unknown) => {
      assert.ok(error instanceof Deno.errors.NotFound);
      assert.equal(
        error.message,
        'Cannot read the etcd CA file "/nonexistent/ca.pem": it does not exist',
      );
      return true;
    },
  );
  await assert.rejects(
    EtcdMetadata.open({ endpoints, clock, tls: { certFile: "/tmp/c.pem" } }),
    RangeError,
  );
  await assert.rejects(
    EtcdMetadata.open({ endpoints: ["http://127.0.0.1:1"], clock, tls: { caFile: "/x" } }),
    RangeError,
  );
  await assert.rejects(EtcdMetadata.open({ endpoints: [], clock }), RangeError);
  await assert.rejects(EtcdMetadata.open({ endpoints, clock, keyPrefix: "/" }), RangeError);
});
