import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import type { ManualClock } from "../clock.ts";
import type { MetadataService } from "./metadata_service.ts";
import { testMetadataService } from "./_metadata_conformance.ts";
import { type EtcdServer, startEtcd } from "./_etcd_server.ts";
import { ETCD_LEASE_TTL_GRANULARITY_MS, EtcdMetadata } from "./etcd_metadata.ts";

/**
 * One etcd for the conformance suite, started when the module loads (so no
 * test owns its process); every pair gets a fresh key prefix, which is a
 * fresh, empty store. The last test of the file closes it; if a filter
 * skips that test, the server's watchdog kills it when the process exits.
 */
const shared: { server: EtcdServer } | { error: unknown } = await startEtcd().then(
  (server) => ({ server }),
  (error) => ({ error }),
);

function sharedServer(): EtcdServer {
  if ("error" in shared) throw shared.error;
  return shared.server;
}

/**
 * How much real time a lease that must still be alive keeps in hand when
 * {@linkcode LeaseTimeline.elapse} returns, in milliseconds: the test's
 * next few requests run in it.
 */
const ALIVE_MARGIN_MS = 300;
/** How long past its deadline etcd may take to expire a lease (its lessor checks every 500 ms). */
const EXPIRY_DELAY_MS_MAX = 5_000;
/** How often an expiring lease is polled, in milliseconds. */
const EXPIRY_POLL_INTERVAL_MS = 20;

interface TrackedLease {
  id: number;
  /** When the lease runs out by the test's manual clock. */
  clockExpiresAtMs: number;
  /** `performance.now()` before which etcd cannot have expired it (request start + ttl). */
  realDeadlineMs: number;
  expiredInEtcd: boolean;
}

/**
 * The `elapse` of an etcd pair. The suite's manual clock says which leases
 * ran out; etcd expires them in real time. `elapse(ms)` advances the clock,
 * sleeps up to `ms` of real time (less when a lease that must stay alive
 * would come too close to its real deadline), then waits until etcd has
 * expired every lease the clock says ran out, polling etcd. It throws when
 * a lease that must still be alive may already have expired in real time:
 * the suite's schedule then does not fit etcd, and the test says so instead
 * of failing on a confusing assertion.
 */
class LeaseTimeline {
  #clock: ManualClock;
  #probe: Etcd3;
  #leases = new Map<number, TrackedLease>();

  constructor(clock: ManualClock, endpoints: string[]) {
    this.#clock = clock;
    this.#probe = new Etcd3({ hosts: endpoints });
  }

  /** `service`, with its lease calls recorded here. */
  track(service: EtcdMetadata): MetadataService {
    return new Proxy(service, {
      get: (target, property) => {
        if (property === "grantLease") {
          return async (ttlMs: number) => {
            const startMs = performance.now();
            const lease = await target.grantLease(ttlMs);
            this.#leases.set(lease.id, {
              id: lease.id,
              clockExpiresAtMs: this.#clock.nowMs() + lease.ttlMs,
              realDeadlineMs: startMs + lease.ttlMs,
              expiredInEtcd: false,
            });
            return lease;
          };
        }
        if (property === "renewLease") {
          return async (lease: { id: number; ttlMs: number }) => {
            const startMs = performance.now();
            await target.renewLease(lease);
            const tracked = this.#leases.get(lease.id);
            if (tracked !== undefined) {
              tracked.clockExpiresAtMs = this.#clock.nowMs() + lease.ttlMs;
              tracked.realDeadlineMs = startMs + lease.ttlMs;
            }
          };
        }
        if (property === "revokeLease") {
          return async (lease: { id: number }) => {
            await target.revokeLease(lease as never);
            this.#leases.delete(lease.id);
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  async #expiredInEtcd(id: number): Promise<boolean> {
    const response = await this.#probe.leaseClient.leaseTimeToLive({ ID: String(id) });
    return Number(response.TTL) === -1;
  }

  async elapse(ms: number): Promise<void> {
    this.#clock.advance(ms);
    const nowMs = this.#clock.nowMs();
    const leases = [...this.#leases.values()];
    const mustLive = leases.filter((lease) => lease.clockExpiresAtMs > nowMs);
    const mustDie = leases.filter((lease) => lease.clockExpiresAtMs <= nowMs);
    const budgetsMs = mustLive.map((lease) =>
      lease.realDeadlineMs - performance.now() - ALIVE_MARGIN_MS
    );
    const sleepMs = Math.min(mustLive.length === 0 ? 0 : ms, ...budgetsMs);
    if (sleepMs > 0) await new Promise((resolve) => setTimeout(resolve, sleepMs));
    for (const lease of mustDie) {
      while (!lease.expiredInEtcd) {
        lease.expiredInEtcd = await this.#expiredInEtcd(lease.id);
        if (lease.expiredInEtcd) break;
        if (performance.now() > lease.realDeadlineMs + EXPIRY_DELAY_MS_MAX) {
          throw new Error(`etcd did not expire lease ${lease.id} in time`);
        }
        await new Promise((resolve) => setTimeout(resolve, EXPIRY_POLL_INTERVAL_MS));
      }
    }
    for (const lease of mustLive) {
      if (performance.now() > lease.realDeadlineMs - ALIVE_MARGIN_MS / 2) {
        throw new Error(
          `Cannot elapse ${ms} ms: lease ${lease.id} must still be alive but is within ` +
            `${ALIVE_MARGIN_MS / 2} ms of expiring in etcd`,
        );
      }
      assert.equal(await this.#expiredInEtcd(lease.id), false, `lease ${lease.id} is alive`);
    }
  }

  close(): void {
    this.#probe.close();
  }
}

let pairs = 0;

testMetadataService("EtcdMetadata", async (clock) => {
  const server = sharedServer();
  const keyPrefix = `/torus-conformance/${++pairs}/`;
  const options = { endpoints: server.endpoints, clock, keyPrefix };
  const a = await EtcdMetadata.open({ ...options, uuid: "client-a" });
  const b = await EtcdMetadata.open({ ...options, uuid: "client-b" });
  const timeline = new LeaseTimeline(clock, server.endpoints);
  return {
    a: timeline.track(a),
    b: timeline.track(b),
    elapse: (ms) => timeline.elapse(ms),
    settleWatchers: async () => {
      await a.syncRingWatchers();
      await b.syncRingWatchers();
    },
    leaseTtlGranularityMs: ETCD_LEASE_TTL_GRANULARITY_MS,
    close: async () => {
      await a.close();
      await b.close();
      timeline.close();
    },
  };
});

Deno.test("EtcdMetadata: (last) the shared etcd stops", async () => {
  await sharedServer().close();
});
