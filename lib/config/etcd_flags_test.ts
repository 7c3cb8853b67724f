import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { ManualClock } from "../clock.ts";
import { EtcdMetadata } from "../metadata/etcd_metadata.ts";
import { startEtcd } from "../metadata/_etcd_server.ts";
import { ETCD_FLAGS, etcdOptionsFromFlags, etcdSettingsFromFlags } from "./etcd_flags.ts";
import { defaultConfigPath, saveProfile } from "./profile.ts";

/** Parses `args` with the shared flags, as `runCommand` does. */
function parse(args: string[]) {
  const options = Object.fromEntries(
    Object.entries(ETCD_FLAGS).map((
      [name, spec],
    ) => [name, { type: spec.type, ...(spec.short ? { short: spec.short } : {}) }]),
  );
  return parseArgs({ args, options, strict: true }).values as Record<string, string | undefined>;
}

Deno.test("ETCD_FLAGS: the original's flags, with -C for --etcd and no parser defaults", () => {
  assert.deepEqual(Object.keys(ETCD_FLAGS).sort(), [
    "config",
    "etcd",
    "etcd-ca-file",
    "etcd-cert-file",
    "etcd-key-file",
    "profile",
  ]);
  assert.equal(ETCD_FLAGS.etcd!.short, "C");
  for (const spec of Object.values(ETCD_FLAGS)) {
    assert.equal(spec.type, "string");
    assert.equal(spec.default, undefined);
  }
});

Deno.test("etcdSettingsFromFlags() maps flags to settings and drops empty ones", () => {
  assert.deepEqual(
    etcdSettingsFromFlags(parse([
      "-C",
      "a:1,b:2",
      "--etcd-ca-file",
      "/ca",
      "--etcd-cert-file=/c",
      "--etcd-key-file",
      "/k",
      "--config",
      "/cfg.json",
      "--profile",
      "p",
    ])),
    {
      etcd: "a:1,b:2",
      caFile: "/ca",
      certFile: "/c",
      keyFile: "/k",
      config: "/cfg.json",
      profile: "p",
    },
  );
  assert.deepEqual(etcdSettingsFromFlags(parse(["--etcd", ""])), {});
  assert.throws(() => etcdSettingsFromFlags({ etcd: true }), TypeError);
});

Deno.test("etcdOptionsFromFlags(): a profile in an injected home reaches a real etcd", async () => {
  await using etcd = await startEtcd();
  const home = await Deno.makeTempDir({ prefix: "torus-home-" });
  try {
    await saveProfile(defaultConfigPath(home), "lab", { etcd: `${etcd.endpoint},127.0.0.1:1` });
    const clock = new ManualClock(0);
    const options = await etcdOptionsFromFlags(parse(["--profile", "lab"]), {
      clock,
      home,
      uuid: "u",
    });
    assert.deepEqual(options, {
      endpoints: [etcd.endpoint, "127.0.0.1:1"],
      clock,
      uuid: "u",
    });
    const metadata = await EtcdMetadata.open({ ...options, keyPrefix: "/flags" });
    try {
      assert.deepEqual(await metadata.listVolumes(), []);
    } finally {
      await metadata.close();
    }
    const fallback = await etcdOptionsFromFlags(parse([]), { clock, home });
    assert.deepEqual(fallback.endpoints, ["127.0.0.1:2379"], "no default profile: the default");
    await assert.rejects(
      etcdOptionsFromFlags(parse(["--profile", "x"]), { clock, home }),
      RangeError,
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
