/**
 * ringtool: simulate a ring membership change and print the data movement.
 * The rings (`mod`, `ketama`, …) arrive with cluster mode; until then this
 * says so and exits non-zero rather than printing invented figures.
 *
 * @module
 */
if (import.meta.main) {
  console.error(
    "ringtool: placement rings are not built yet (they arrive with cluster mode); nothing to simulate",
  );
  Deno.exit(1);
}
