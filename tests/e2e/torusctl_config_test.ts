import assert from "node:assert/strict";
import { join } from "node:path";
import { type CommandResult, run } from "./_cli.ts";

/** Runs `torusctl config ...` with HOME set to `home`. */
function config(home: string, args: string[]): Promise<CommandResult> {
  return run("torusctl", ["config", ...args], undefined, { env: { HOME: home } });
}

function expectOneLine(result: CommandResult, code: number, pattern: RegExp): void {
  assert.equal(result.code, code, result.stderr);
  assert.equal(result.stdout, "");
  assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
  assert.match(result.stderr, pattern);
}

Deno.test("torusctl config: saves profiles in ~/.torus/config.json and prints them", async () => {
  const home = await Deno.makeTempDir({ prefix: "torusctl-config-e2e-" });
  const path = join(home, ".torus", "config.json");
  try {
    let r = await config(home, ["--etcd", "a:2379,b:2379"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `saved profile "default" in ${path}\n`);
    assert.equal((await Deno.stat(join(home, ".torus"))).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);

    r = await config(home, [
      "--profile",
      "prod",
      "-C",
      "https://p1:2379,https://p2:2379",
      "--etcd-ca-file",
      "/etc/torus/ca.pem",
      "--etcd-cert-file",
      "/etc/torus/client.pem",
      "--etcd-key-file=/etc/torus/client-key.pem",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const expected = {
      etcd_config: {
        default: { etcd: "a:2379,b:2379" },
        prod: {
          etcd: "https://p1:2379,https://p2:2379",
          "etcd-ca-file": "/etc/torus/ca.pem",
          "etcd-cert-file": "/etc/torus/client.pem",
          "etcd-key-file": "/etc/torus/client-key.pem",
        },
      },
    };
    assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), expected);

    r = await config(home, ["--view"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), expected);
    assert.match(r.stdout, /^{\n\t"etcd_config": {\n\t\t"default"/, "tab-indented as written");
    r = await config(home, ["--view", "--profile", "prod"]);
    assert.deepEqual(JSON.parse(r.stdout), expected.etcd_config.prod);

    r = await config(home, ["--profile", "prod", "--etcd", "q:2379"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(path)).etcd_config, {
      default: { etcd: "a:2379,b:2379" },
      prod: { etcd: "q:2379" },
    }, "saving a profile replaces it and keeps the others");

    const other = join(home, "other.json");
    r = await config(home, ["--config", other]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(other)), {
      etcd_config: { default: { etcd: "127.0.0.1:2379" } },
    });
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("torusctl config: bad input is one line on stderr, a non-zero exit, and writes nothing", async () => {
  const home = await Deno.makeTempDir({ prefix: "torusctl-config-e2e-" });
  const path = join(home, ".torus", "config.json");
  try {
    expectOneLine(await config(home, ["--view"]), 1, /config\.json": it does not exist/);
    expectOneLine(await config(home, ["--etcd", "a:99999"]), 2, /the port must be in/);
    expectOneLine(await config(home, ["--etcd", "ftp://a:1"]), 2, /scheme must be http or https/);
    expectOneLine(
      await config(home, ["--etcd-cert-file", "/c.pem"]),
      2,
      /needs its key and a key its certificate/,
    );
    expectOneLine(
      await config(home, ["--etcd", "http://a:1", "--etcd-ca-file", "/ca.pem"]),
      2,
      /TLS files are set but an endpoint says http/,
    );
    expectOneLine(await config(home, ["--bogus"]), 2, /bogus/);
    expectOneLine(await config(home, ["extra"]), 2, /usage: torusctl config/);
    assert.equal(await Deno.stat(path).catch(() => null), null, "nothing written");

    assert.equal((await config(home, ["-C", "a:1"])).code, 0);
    expectOneLine(await config(home, ["--view", "--etcd", "b:1"]), 2, /--view prints/);
    expectOneLine(
      await config(home, ["--view", "--profile", "nope"]),
      2,
      /profile "nope".*no such profile/,
    );
    await Deno.writeTextFile(path, "{not json");
    expectOneLine(await config(home, ["--view"]), 2, /Cannot read the Torus config file/);
    const noHome = await run("torusctl", ["config", "-C", "a:1"], undefined, { clearEnv: true });
    expectOneLine(noHome, 1, /HOME is not set \(pass --config\)/);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
