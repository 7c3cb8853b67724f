/**
 * Keeps a lease alive: grants it, renews it on a timer, and revokes it on
 * close. Volume locks are bound to this lease, so a process that dies (or
 * stops renewing) loses its locks within one TTL.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { LEASE_RENEW_INTERVAL_MS, LEASE_TTL_MS_DEFAULT } from "../constants.ts";
import type { Lease, MetadataService } from "../metadata/metadata_service.ts";

/** A lease renewed in the background. */
export class LeaseKeeper {
  readonly lease: Lease;
  #metadata: MetadataService;
  #clock: Clock;
  #timer = 0;
  #closed = false;
  #onLost: (error: unknown) => void;

  private constructor(
    metadata: MetadataService,
    clock: Clock,
    lease: Lease,
    onLost: (error: unknown) => void,
  ) {
    this.#metadata = metadata;
    this.#clock = clock;
    this.lease = lease;
    this.#onLost = onLost;
    this.#schedule();
  }

  /** Grants a lease and starts renewing it. `onLost` hears when a renewal fails. */
  static async start(
    metadata: MetadataService,
    clock: Clock,
    options: { ttlMs?: number; onLost?: (error: unknown) => void } = {},
  ): Promise<LeaseKeeper> {
    const lease = await metadata.grantLease(options.ttlMs ?? LEASE_TTL_MS_DEFAULT);
    return new LeaseKeeper(metadata, clock, lease, options.onLost ?? (() => {}));
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = this.#clock.setTimer(LEASE_RENEW_INTERVAL_MS, () => {
      this.#metadata.renewLease(this.lease).then(
        () => this.#schedule(),
        (error) => {
          if (!this.#closed) this.#onLost(error);
          this.#schedule();
        },
      );
    });
  }

  /** Stops renewing and revokes the lease (releasing its locks). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#clock.clearTimer(this.#timer);
    await this.#metadata.revokeLease(this.lease).catch(() => {});
  }
}
