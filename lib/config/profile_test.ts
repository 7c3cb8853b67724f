import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CONFIG_DIR_MODE,
  CONFIG_FILE_BYTES_MAX,
  CONFIG_FILE_MODE,
  defaultConfigPath,
  readCliConfig,
  resolveEtcdSettings,
  saveProfile,
  viewCliConfig,
  writeCliConfig,
} from "./profile.ts";

async function tempHome(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "torus-home-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

Deno.test("saveProfile() writes ~/.torus/config.json 0600 in a 0700 directory, tab-indented", async () => {
  await using home = await tempHome();
  const path = defaultConfigPath(home.path);
  assert.equal(path, join(home.path, ".torus", "config.json"));
  const previousUmask = Deno.umask(0o022);
  try {
    await saveProfile(path, "default", { etcd: "a:2379,b:2379" });
  } finally {
    Deno.umask(previousUmask);
  }
  assert.equal((await Deno.stat(join(home.path, ".torus"))).mode! & 0o777, CONFIG_DIR_MODE);
  assert.equal((await Deno.stat(path)).mode! & 0o777, CONFIG_FILE_MODE);
  assert.equal(
    await Deno.readTextFile(path),
    '{\n\t"etcd_config": {\n\t\t"default": {\n\t\t\t"etcd": "a:2379,b:2379"\n\t\t}\n\t}\n}\n',
  );
  assert.deepEqual((await Array.fromAsync(Deno.readDir(join(home.path, ".torus")))).length, 1);
});

Deno.test("saveProfile() replaces its profile, keeps the others and stores absolute paths", async () => {
  await using home = await tempHome();
  const path = defaultConfigPath(home.path);
  await saveProfile(path, "default", { etcd: "a:2379", "etcd-ca-file": "/etc/ca.pem" });
  await saveProfile(path, "prod", {
    etcd: "https://p1:2379,https://p2:2379",
    "etcd-ca-file": "ca.pem",
    "etcd-cert-file": "/certs/c.pem",
    "etcd-key-file": "/certs/k.pem",
  });
  await saveProfile(path, "default", { etcd: "b:2379" });
  assert.deepEqual(await readCliConfig(path), {
    etcd_config: {
      default: { etcd: "b:2379" },
      prod: {
        etcd: "https://p1:2379,https://p2:2379",
        "etcd-ca-file": join(Deno.cwd(), "ca.pem"),
        "etcd-cert-file": "/certs/c.pem",
        "etcd-key-file": "/certs/k.pem",
      },
    },
  });
  await saveProfile(path, "empty", {});
  assert.deepEqual((await readCliConfig(path))?.etcd_config.empty, { etcd: "127.0.0.1:2379" });
});

Deno.test("saveProfile() refuses bad endpoints, a lone certificate and an empty name", async () => {
  await using home = await tempHome();
  const path = defaultConfigPath(home.path);
  await assert.rejects(saveProfile(path, "p", { etcd: "a:99999" }), RangeError);
  await assert.rejects(saveProfile(path, "p", { etcd: "ftp://a:1" }), RangeError);
  await assert.rejects(
    saveProfile(path, "p", { etcd: "http://a:1", "etcd-ca-file": "/ca" }),
    RangeError,
    "TLS over http://",
  );
  await assert.rejects(saveProfile(path, "p", { "etcd-cert-file": "/c" }), RangeError);
  await assert.rejects(saveProfile(path, " ", { etcd: "a:1" }), RangeError);
  assert.equal(await readCliConfig(path), null, "nothing written");
});

Deno.test("readCliConfig(): missing is null; malformed or huge files are errors", async () => {
  await using home = await tempHome();
  const path = join(home.path, "config.json");
  assert.equal(await readCliConfig(path), null);
  for (
    const text of [
      "not json",
      "[]",
      '{"etcd_config": []}',
      '{"etcd_config": {"p": "x"}}',
      '{"etcd_config": {"p": {"etcd": 5}}}',
    ]
  ) {
    await Deno.writeTextFile(path, text);
    await assert.rejects(readCliConfig(path), SyntaxError, text);
  }
  await Deno.writeTextFile(path, '{"etcd_config": {"p": {"etcd": "a:1", "other": 1}}}');
  assert.deepEqual(await readCliConfig(path), { etcd_config: { p: { etcd: "a:1" } } });
  await Deno.writeTextFile(path, "{}");
  assert.deepEqual(await readCliConfig(path), { etcd_config: {} });
  await Deno.writeTextFile(path, " ".repeat(CONFIG_FILE_BYTES_MAX + 1));
  await assert.rejects(readCliConfig(path), RangeError);
});

Deno.test("resolveEtcdSettings(): flags win, then the profile, then 127.0.0.1:2379", async () => {
  await using home = await tempHome();
  const options = { home: home.path };
  assert.deepEqual(await resolveEtcdSettings({}, options), {
    endpoints: ["127.0.0.1:2379"],
    profile: "default",
    configPath: null,
  });
  const path = defaultConfigPath(home.path);
  await writeCliConfig(path, {
    etcd_config: {
      default: { etcd: "d1:2379,d2:2379", "etcd-ca-file": "/ca.pem" },
      other: { etcd: "http://o:1" },
    },
  });
  assert.deepEqual(await resolveEtcdSettings({}, options), {
    endpoints: ["d1:2379", "d2:2379"],
    tls: { caFile: "/ca.pem" },
    profile: "default",
    configPath: path,
  });
  assert.deepEqual(
    await resolveEtcdSettings({ etcd: "f:1", certFile: "/c", keyFile: "/k" }, options),
    {
      endpoints: ["f:1"],
      tls: { caFile: "/ca.pem", certFile: "/c", keyFile: "/k" },
      profile: "default",
      configPath: path,
    },
  );
  assert.deepEqual(await resolveEtcdSettings({ etcd: "", profile: "other" }, options), {
    endpoints: ["http://o:1"],
    profile: "other",
    configPath: path,
  });
  await assert.rejects(resolveEtcdSettings({ profile: "missing" }, options), RangeError);
  await assert.rejects(
    resolveEtcdSettings({ profile: "other", caFile: "/ca" }, options),
    RangeError,
    "TLS files with an http:// endpoint",
  );
  await assert.rejects(
    resolveEtcdSettings({ config: join(home.path, "nope.json") }, options),
    Deno.errors.NotFound,
  );
  const elsewhere = join(home.path, "elsewhere.json");
  await writeCliConfig(elsewhere, { etcd_config: { default: { etcd: "e:1" } } });
  assert.deepEqual((await resolveEtcdSettings({ config: elsewhere }, options)).endpoints, ["e:1"]);
});

Deno.test("viewCliConfig() prints the file or one profile, tab-indented", async () => {
  await using home = await tempHome();
  const path = defaultConfigPath(home.path);
  await assert.rejects(viewCliConfig(path), Deno.errors.NotFound);
  await saveProfile(path, "default", { etcd: "a:1" });
  assert.equal(
    await viewCliConfig(path),
    '{\n\t"etcd_config": {\n\t\t"default": {\n\t\t\t"etcd": "a:1"\n\t\t}\n\t}\n}',
  );
  assert.equal(await viewCliConfig(path, "default"), '{\n\t"etcd": "a:1"\n}');
  await assert.rejects(viewCliConfig(path, "other"), RangeError);
});
