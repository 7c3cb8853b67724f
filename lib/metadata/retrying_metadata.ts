/**
 * A {@linkcode MetadataService} that rides out short outages of the one
 * below (an etcd restart, a leader election): calls that are safe to repeat
 * are retried with backoff while they fail with `MetadataUnavailableError`,
 * for up to {@linkcode METADATA_RETRY_WINDOW_MS}. A writer's FLUSH then
 * waits for etcd to come back instead of failing.
 *
 * Only idempotent calls are retried: reads, `nextINode` (a lost reply skips
 * a number, which is harmless), `commitINode` (fenced: repeating the same
 * commit under the same lock is a no-op or the same change), lease renewal
 * and peer registration. Calls whose repetition could report a false
 * conflict (creating a volume or snapshot, taking a lock, growing a volume
 * that another client grew further meanwhile) fail at once.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { MetadataUnavailableError } from "../errors.ts";
import type { MetadataService } from "./metadata_service.ts";

/** How long a retried call keeps trying, in milliseconds. */
export const METADATA_RETRY_WINDOW_MS = 30_000;
/** First pause between attempts, in milliseconds; it doubles. */
export const METADATA_RETRY_BACKOFF_MIN_MS = 100;
/** Longest pause between attempts, in milliseconds. */
export const METADATA_RETRY_BACKOFF_MAX_MS = 2_000;

/** The methods retried while the service is unavailable. */
export const RETRIED_METHODS: ReadonlySet<string> = new Set([
  "globalMetadata",
  "getVolume",
  "listVolumes",
  "volumeIdHighwater",
  "nextINode",
  "inodeCounter",
  "currentINode",
  "commitINode",
  "renewLease",
  "lockStatus",
  "listSnapshots",
  "registerPeer",
  "listPeers",
  "getRing",
]);

/**
 * Wraps `inner` so that the {@linkcode RETRIED_METHODS} retry through short
 * outages. Everything else passes straight through.
 */
export function retryingMetadata(
  inner: MetadataService,
  clock: Clock,
  windowMs = METADATA_RETRY_WINDOW_MS,
): MetadataService {
  return new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      if (typeof property !== "string" || !RETRIED_METHODS.has(property)) {
        return value.bind(target);
      }
      return async (...args: unknown[]) => {
        const deadline = clock.nowMs() + windowMs;
        let pause = METADATA_RETRY_BACKOFF_MIN_MS;
        for (;;) {
          try {
            return await value.apply(target, args);
          } catch (error) {
            if (!(error instanceof MetadataUnavailableError) || clock.nowMs() + pause > deadline) {
              throw error;
            }
          }
          await clock.sleep(pause);
          pause = Math.min(pause * 2, METADATA_RETRY_BACKOFF_MAX_MS);
        }
      };
    },
  });
}
