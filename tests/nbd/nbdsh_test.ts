/**
 * `nbdsh` (libnbd's Python shell) against the server: command semantics and
 * errnos as a real client sees them. Client-side checks are turned off with
 * `set_strict_mode(0)` where the test is about the server's answer.
 */
import { runToolOk, startServer, type TestServer } from "./_tools.ts";

const MiB = 1024 * 1024;

/** Runs a Python script in nbdsh; the script fails the test with `assert`. */
async function nbdsh(script: string): Promise<string> {
  const { stdout } = await runToolOk("nbdsh", ["-c", script]);
  return stdout;
}

async function withServer(body: (server: TestServer) => Promise<void>): Promise<void> {
  const server = startServer([
    { name: "disk", sizeBytes: 4 * MiB },
    { name: "ro", sizeBytes: MiB, readOnly: true },
  ]);
  try {
    await body(server);
  } finally {
    await server.close();
  }
}

const connect = (uri: string, structured = true) => `
import errno
h = nbd.NBD()
h.set_request_structured_replies(${structured ? "True" : "False"})
h.connect_uri(${JSON.stringify(uri)})
`;

for (const structured of [true, false]) {
  const mode = structured ? "structured replies" : "simple replies";

  Deno.test(`nbdsh (${mode}): TRIM then READ gives zeros`, async () => {
    await withServer(async (server) => {
      await nbdsh(
        connect(server.uri("disk"), structured) + `
assert h.get_structured_replies_negotiated() == ${structured ? "True" : "False"}
h.pwrite(b"\\xab" * (2 * 1024 * 1024), 0)
h.trim(1024 * 1024, 0)
assert h.pread(1024 * 1024, 0) == bytes(1024 * 1024)
# A trim inside a page zeroes just its range.
h.trim(1000, 1024 * 1024 + 100)
data = h.pread(2000, 1024 * 1024)
assert data[:100] == b"\\xab" * 100
assert data[100:1100] == bytes(1000)
assert data[1100:] == b"\\xab" * 900
h.shutdown()
`,
      );
    });
  });

  Deno.test(`nbdsh (${mode}): WRITE_ZEROES gives zeros, with and without NO_HOLE`, async () => {
    await withServer(async (server) => {
      await nbdsh(
        connect(server.uri("disk"), structured) + `
expected = bytearray(b"\\x5a" * 300000)
h.pwrite(bytes(expected), 0)
h.zero(100000, 10)
expected[10:100010] = bytes(100000)
h.zero(100000, 150000, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
expected[150000:250000] = bytes(100000)
assert h.pread(300000, 0) == bytes(expected)
h.shutdown()
`,
      );
    });
  });

  Deno.test(`nbdsh (${mode}): out-of-range requests fail with EINVAL (ENOSPC for writes)`, async () => {
    await withServer(async (server) => {
      await nbdsh(
        connect(server.uri("disk"), structured) + `
h.set_strict_mode(0)
size = h.get_size()
for count, offset in [(10, size), (1, size), (2, size - 1), (512, 1 << 60)]:
    try:
        h.pread(count, offset)
        assert False, "out-of-range pread succeeded"
    except nbd.Error as e:
        assert e.errno == "EINVAL", e
try:
    h.trim(2, size - 1)
    assert False, "out-of-range trim succeeded"
except nbd.Error as e:
    assert e.errno == "EINVAL", e
try:
    h.pwrite(b"x" * 2, size - 1)
    assert False, "out-of-range pwrite succeeded"
except nbd.Error as e:
    assert e.errno == "ENOSPC", e
# The connection is still good.
h.pwrite(b"ok", size - 2)
assert h.pread(2, size - 2) == b"ok"
h.shutdown()
`,
      );
    });
  });
}

Deno.test("nbdsh: a write to a read-only export fails with EPERM", async () => {
  await withServer(async (server) => {
    await nbdsh(
      connect(server.uri("ro")) + `
assert h.is_read_only()
assert not h.can_trim() and not h.can_zero() and not h.can_fua()
h.set_strict_mode(0)
for action in [lambda: h.pwrite(b"x" * 4096, 0), lambda: h.trim(4096, 0), lambda: h.zero(4096, 0)]:
    try:
        action()
        assert False, "write to read-only export succeeded"
    except nbd.Error as e:
        assert e.errno == "EPERM", e
assert h.pread(4096, 0) == bytes(4096)
h.flush()
h.shutdown()
`,
    );
  });
});

Deno.test("nbdsh: FUA writes and FLUSH succeed; a second connection sees the data", async () => {
  await withServer(async (server) => {
    await nbdsh(
      connect(server.uri("disk")) + `
assert h.can_flush() and h.can_fua() and h.can_multi_conn()
h.pwrite(b"durable", 4096, nbd.CMD_FLAG_FUA)
h.pwrite(b"flushed", 8192)
h.flush()
other = nbd.NBD()
other.connect_uri(${JSON.stringify(server.uri("disk"))})
assert other.pread(7, 4096) == b"durable"
assert other.pread(7, 8192) == b"flushed"
other.shutdown()
h.shutdown()
`,
    );
  });
});

Deno.test("nbdsh: option mode — NBD_OPT_LIST, NBD_OPT_INFO, NBD_OPT_ABORT", async () => {
  await withServer(async (server) => {
    const out = await nbdsh(`
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(${JSON.stringify(server.uri("disk"))})
names = []
h.opt_list(lambda name, description: names.append(name))
assert names == ["disk", "ro"], names
h.set_export_name("ro")
h.opt_info()
assert h.get_size() == 1024 * 1024
assert h.is_read_only()
h.opt_abort()
assert h.aio_is_closed()
# The server lives on.
g = nbd.NBD()
g.connect_uri(${JSON.stringify(server.uri("disk"))})
assert g.get_size() == 4 * 1024 * 1024
g.shutdown()
print("ok")
`);
    if (out.trim() !== "ok") throw new Error(`unexpected output: ${out}`);
  });
});
