/**
 * A real etcd for tests: {@linkcode startEtcd} runs the Debian `etcd` binary
 * (v3.4) on random free loopback ports with a temporary data directory, waits
 * until it serves clients, and can stop, kill and restart it on the same ports
 * and data, so that tests can take etcd away under a client and bring it back.
 *
 * Cleanup is guaranteed twice over: `close()` (or `await using`) kills etcd
 * and removes the temporary directory, and a watchdog shell started with each
 * server does the same when the test process dies without closing it (its
 * stdin is a pipe from the test process; end of file means the parent is gone).
 *
 * etcd writes its log to a file in the temporary directory (not a pipe), so a
 * server that outlives one test leaves no pending read in the next one; the
 * log's tail is part of every start-up error.
 *
 * When the binary is missing, {@linkcode startEtcd} throws an error that names
 * the package to install: tests that need etcd fail, they never skip.
 *
 * @module
 */
import { join } from "node:path";

/** Where the Debian `etcd-server` package installs etcd. */
export const ETCD_BINARY_PATH = "/usr/bin/etcd";
/** The command that installs the etcd binary the tests need. */
export const ETCD_INSTALL_COMMAND = "apt-get install -y etcd-server";
/** The command that installs openssl, which {@linkcode makeTestPki} runs. */
export const OPENSSL_INSTALL_COMMAND = "apt-get install -y openssl";
/** Longest wait for a started etcd to serve clients, in milliseconds. */
export const ETCD_START_TIMEOUT_MS = 20_000;
/** Longest wait for etcd to exit after SIGTERM before it gets SIGKILL, in milliseconds. */
export const ETCD_STOP_TIMEOUT_MS = 10_000;
/**
 * Raft heartbeat of test servers, in milliseconds. etcd's shortest lease TTL
 * is 1.5 election timeouts (3.4: `3 * electionTicks / 2` heartbeats), so
 * 25 ms heartbeats and 250 ms elections let tests grant 1-second leases; with
 * etcd's defaults (100 ms, 1 s) every lease lasts at least 2 s.
 */
export const ETCD_TEST_HEARTBEAT_INTERVAL_MS = 25;
/** Raft election timeout of test servers, in milliseconds (see the heartbeat). */
export const ETCD_TEST_ELECTION_TIMEOUT_MS = 250;
/** How often start-up polls the log for readiness, in milliseconds. */
const READY_POLL_INTERVAL_MS = 10;
/** How many times start-up picks new ports when another process took one. */
const PORT_ATTEMPTS_MAX = 5;
/** How much of etcd's log an error quotes, in bytes. */
const LOG_TAIL_BYTES = 2_000;
/** Validity of the test certificates, in days. */
const TEST_CERTIFICATE_DAYS = 2;

/** What etcd logs (zap, 3.4) once it serves clients, with or without TLS. */
const READY_PATTERN = /"msg":"serving client traffic/;
/** What etcd logs when a port is taken. */
const PORT_TAKEN_PATTERN = /address already in use/;

/** Certificates and keys for a TLS test server and its clients, all PEM files. */
export interface EtcdTestPki {
  /** The CA that signed the server and the client certificate. */
  caFile: string;
  /** The CA's key (to sign more certificates). */
  caKeyFile: string;
  /** Server certificate for 127.0.0.1 and localhost. */
  serverCertFile: string;
  /** The server certificate's key. */
  serverKeyFile: string;
  /** Client certificate (for `--client-cert-auth`). */
  certFile: string;
  /** The client certificate's key. */
  keyFile: string;
}

/** Options of {@linkcode startEtcd}. */
export interface StartEtcdOptions {
  /**
   * Serve clients over TLS with a fresh test PKI, and require client
   * certificates signed by its CA.
   * @default {false}
   */
  tls?: boolean;
  /**
   * The etcd binary.
   * @default {ETCD_BINARY_PATH}
   */
  binary?: string;
  /**
   * The IPv4 address etcd listens on (for clients and its peer port), such
   * as a bridge's address that processes in other network namespaces reach.
   * The TLS test certificate names only 127.0.0.1.
   * @default {"127.0.0.1"}
   */
  host?: string;
}

/** A running (or stopped) etcd started by {@linkcode startEtcd}. */
export interface EtcdServer extends AsyncDisposable {
  /** The client URL, `http://HOST:PORT` or `https://...` with TLS. */
  readonly endpoint: string;
  /** `[endpoint]`, for APIs that take several. */
  readonly endpoints: string[];
  /** The client port on the host (127.0.0.1 unless {@linkcode StartEtcdOptions.host}). */
  readonly clientPort: number;
  /** etcd's data directory (inside the temporary directory). */
  readonly dataDir: string;
  /** The test PKI when started with `tls: true`. */
  readonly tls: EtcdTestPki | undefined;
  /** True between a start and the next stop or kill. */
  readonly running: boolean;
  /** Stops etcd with SIGTERM (SIGKILL after {@linkcode ETCD_STOP_TIMEOUT_MS}); keeps its data. */
  stop(): Promise<void>;
  /** Kills etcd with SIGKILL, like a crash; keeps its data. */
  kill(): Promise<void>;
  /** Starts etcd again on the same ports and data directory (stopping it first if running). */
  restart(): Promise<void>;
  /** The end of etcd's log, for diagnostics. */
  logTail(): Promise<string>;
  /** Kills etcd and removes the temporary directory. Idempotent. */
  close(): Promise<void>;
}

/** A free TCP port on `hostname` (free when asked: another process may take it later). */
function freePort(hostname: string): number {
  const listener = Deno.listen({ hostname, port: 0 });
  try {
    return (listener.addr as Deno.NetAddr).port;
  } finally {
    listener.close();
  }
}

async function readTail(path: string): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.slice(-LOG_TAIL_BYTES);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  }
}

/** Throws the error that names the package to install when `binary` is missing. */
async function checkBinary(binary: string): Promise<void> {
  try {
    const info = await Deno.stat(binary);
    if (info.isFile) return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  throw new Error(
    `Cannot start etcd: "${binary}" is not installed; install it with "${ETCD_INSTALL_COMMAND}"`,
  );
}

async function runOpenssl(directory: string, args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", {
      args,
      cwd: directory,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        `Cannot make test certificates: openssl is not installed; install it with ` +
          `"${OPENSSL_INSTALL_COMMAND}"`,
      );
    }
    throw error;
  }
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim();
    throw new Error(`Cannot make test certificates: openssl ${args[0]} failed: ${stderr}`);
  }
}

/**
 * Makes a CA, a server certificate for 127.0.0.1 and localhost, and a client
 * certificate, with openssl, in `directory` (created if missing). Keys are
 * P-256 and unencrypted: for tests only.
 *
 * @param name Distinguishes the CA's subject when a test makes several PKIs.
 */
export async function makeTestPki(directory: string, name = "torus-test"): Promise<EtcdTestPki> {
  await Deno.mkdir(directory, { recursive: true, mode: 0o700 });
  const days = String(TEST_CERTIFICATE_DAYS);
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await runOpenssl(directory, [
    "req",
    "-x509",
    ...key,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    days,
    "-subj",
    `/CN=${name}-ca`,
  ]);
  const extensions = {
    server: "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    client: "extendedKeyUsage=clientAuth\n",
  };
  for (const [role, text] of Object.entries(extensions)) {
    await Deno.writeTextFile(join(directory, `${role}.ext`), text);
    await runOpenssl(directory, [
      "req",
      ...key,
      "-keyout",
      `${role}.key`,
      "-out",
      `${role}.csr`,
      "-subj",
      `/CN=${name}-${role}`,
    ]);
    await runOpenssl(directory, [
      "x509",
      "-req",
      "-in",
      `${role}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${role}.crt`,
      "-days",
      days,
      "-extfile",
      `${role}.ext`,
    ]);
  }
  return {
    caFile: join(directory, "ca.crt"),
    caKeyFile: join(directory, "ca.key"),
    serverCertFile: join(directory, "server.crt"),
    serverKeyFile: join(directory, "server.key"),
    certFile: join(directory, "client.crt"),
    keyFile: join(directory, "client.key"),
  };
}

/**
 * A shell that waits for end of file on its stdin (the test process exited,
 * or closed it) and then kills the etcd whose pid is in `pidFile`, if that
 * process is still an etcd of `directory`, and removes `directory`. A normal
 * close removes both first, so it then does nothing.
 *
 * The waiting runs in a background subshell that keeps the pipe on fd 3:
 * `deno test` kills the processes a test module spawned when the module
 * ends (etcd and this shell alike), and the orphaned subshell survives that
 * to clean up.
 */
function spawnWatchdog(pidFile: string, directory: string): Deno.ChildProcess {
  const cleanup = 'read _ <&3; pid=$(cat "$1" 2>/dev/null) && ' +
    'case "$(tr "\\0" " " < "/proc/$pid/cmdline" 2>/dev/null)" in ' +
    '*"--data-dir=$2/"*) kill -KILL "$pid" 2>/dev/null;; esac; rm -rf "$2"';
  return new Deno.Command("sh", {
    args: ["-c", `exec 3<&0; (${cleanup}) & wait`, "torus-etcd-watchdog", pidFile, directory],
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

class TestEtcd implements EtcdServer {
  readonly dataDir: string;
  readonly tls: EtcdTestPki | undefined;
  readonly host: string;
  #binary: string;
  #directory: string;
  #logFile: string;
  #pidFile: string;
  #watchdog: Deno.ChildProcess;
  #clientPort = 0;
  #peerPort = 0;
  #child: Deno.ChildProcess | null = null;
  #closed = false;

  constructor(binary: string, directory: string, tls: EtcdTestPki | undefined, host: string) {
    this.#binary = binary;
    this.host = host;
    this.#directory = directory;
    this.dataDir = join(directory, "data");
    this.#logFile = join(directory, "etcd.log");
    this.#pidFile = join(directory, "etcd.pid");
    this.tls = tls;
    this.#watchdog = spawnWatchdog(this.#pidFile, directory);
  }

  get clientPort(): number {
    return this.#clientPort;
  }

  get endpoint(): string {
    return `${this.tls ? "https" : "http"}://${this.host}:${this.#clientPort}`;
  }

  get endpoints(): string[] {
    return [this.endpoint];
  }

  get running(): boolean {
    return this.#child !== null;
  }

  #args(): string[] {
    const peer = `http://${this.host}:${this.#peerPort}`;
    const args = [
      "--name=torus-test",
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.endpoint}`,
      `--advertise-client-urls=${this.endpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=torus-test=${peer}`,
      "--initial-cluster-state=new",
      `--heartbeat-interval=${ETCD_TEST_HEARTBEAT_INTERVAL_MS}`,
      `--election-timeout=${ETCD_TEST_ELECTION_TIMEOUT_MS}`,
      "--logger=zap",
      `--log-outputs=${this.#logFile}`,
    ];
    if (this.tls) {
      args.push(
        `--cert-file=${this.tls.serverCertFile}`,
        `--key-file=${this.tls.serverKeyFile}`,
        `--trusted-ca-file=${this.tls.caFile}`,
        "--client-cert-auth",
      );
    }
    return args;
  }

  /** Starts etcd on fresh ports, retrying when another process took one. */
  async startOnFreePorts(): Promise<void> {
    for (let attempt = 1;; attempt++) {
      this.#clientPort = freePort(this.host);
      this.#peerPort = freePort(this.host);
      try {
        await this.#start();
        return;
      } catch (error) {
        const portTaken = PORT_TAKEN_PATTERN.test(await readTail(this.#logFile));
        if (!portTaken || attempt >= PORT_ATTEMPTS_MAX) throw error;
      }
    }
  }

  /** Spawns etcd and waits until it serves clients or exits. */
  async #start(): Promise<void> {
    if (this.#closed) throw new Error("Cannot start etcd: the test server is closed");
    await Deno.writeTextFile(this.#logFile, "");
    const child = new Deno.Command(this.#binary, {
      args: this.#args(),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.#child = child;
    await Deno.writeTextFile(this.#pidFile, String(child.pid));
    let exited = false;
    const exit = child.status.then((status) => {
      exited = true;
      return status;
    });
    const deadlineMs = performance.now() + ETCD_START_TIMEOUT_MS;
    while (!exited && performance.now() < deadlineMs) {
      if (READY_PATTERN.test(await Deno.readTextFile(this.#logFile))) return;
      await new Promise((resolve) => setTimeout(resolve, READY_POLL_INTERVAL_MS));
    }
    if (!exited) await this.#terminate("SIGKILL");
    const status = await exit;
    this.#child = null;
    const reason = exited ? `it exited with code ${status.code}` : "it did not become ready";
    throw new Error(
      `Cannot start etcd on ${this.host}:${this.#clientPort}: ${reason} within ` +
        `${ETCD_START_TIMEOUT_MS} ms; log tail:\n${await readTail(this.#logFile)}`,
    );
  }

  /** Sends `signal` and waits for the exit, escalating to SIGKILL after the stop timeout. */
  async #terminate(signal: Deno.Signal): Promise<void> {
    const child = this.#child;
    if (child === null) return;
    try {
      child.kill(signal);
    } catch (error) {
      // Already exited: the status below resolves at once.
      if (!(error instanceof TypeError)) throw error;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), ETCD_STOP_TIMEOUT_MS);
    });
    const outcome = await Promise.race([child.status, timeout]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      child.kill("SIGKILL");
      await child.status;
    }
    this.#child = null;
    await Deno.remove(this.#pidFile).catch(() => {});
  }

  stop(): Promise<void> {
    return this.#terminate("SIGTERM");
  }

  kill(): Promise<void> {
    return this.#terminate("SIGKILL");
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.#start();
  }

  logTail(): Promise<string> {
    return readTail(this.#logFile);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.kill();
      await Deno.remove(this.#directory, { recursive: true }).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    } finally {
      await this.#watchdog.stdin.close().catch(() => {});
      await this.#watchdog.status;
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Starts a single-member etcd on free loopback ports with a fresh temporary
 * data directory, and resolves once it serves clients.
 *
 * @example Usage
 * ```ts ignore
 * import { startEtcd } from "./_etcd_server.ts";
 * await using etcd = await startEtcd();
 * // ... connect to etcd.endpoint ...
 * await etcd.kill();
 * await etcd.restart();
 * ```
 *
 * @throws {Error} naming {@linkcode ETCD_INSTALL_COMMAND} when etcd is not installed,
 * or quoting etcd's log when it does not start.
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdServer> {
  const binary = options.binary ?? ETCD_BINARY_PATH;
  await checkBinary(binary);
  const directory = await Deno.makeTempDir({ prefix: "torus-etcd-" });
  let server: TestEtcd | undefined;
  try {
    const tls = options.tls ? await makeTestPki(join(directory, "pki")) : undefined;
    server = new TestEtcd(binary, directory, tls, options.host ?? "127.0.0.1");
    await server.startOnFreePorts();
    return server;
  } catch (error) {
    if (server) await server.close();
    else await Deno.remove(directory, { recursive: true }).catch(() => {});
    throw error;
  }
}
