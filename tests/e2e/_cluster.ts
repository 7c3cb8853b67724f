/**
 * A Torus cluster of real processes for end-to-end tests: a real etcd
 * ({@linkcode startEtcd}), `torusctl init`, N `torusd --auto-join` storage
 * nodes on free ports with temporary data directories, and `torusblk
 * nbdserve` clients that the real NBD tools (nbdcopy, nbdsh, nbdinfo, fio)
 * talk to. Nodes can be killed with SIGKILL and restarted on the same data
 * directory and address; with `netns: true` every node runs in its own
 * network namespace behind a veth pair on a bridge, whose link a test can
 * cut to partition the node away.
 *
 * Cleanup is guaranteed twice over: {@linkcode TestCluster.close} (called by
 * {@linkcode withCluster} in `finally`) kills every process, deletes the
 * namespaces and links, stops etcd and removes the temporary directory; and
 * a watchdog shell does the same when the test process dies without closing
 * the cluster (it waits for end of file on a pipe from the test process).
 *
 * Nothing is skipped: a missing tool, or namespaces without root, fail the
 * test with what to install or how to run it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type EtcdServer, startEtcd } from "../../lib/metadata/_etcd_server.ts";
import { requireTool, toolPath } from "../nbd/_tools.ts";
import { type CommandResult, run } from "./_cli.ts";
import { allMatch, type DaemonProcess, startProcess, stopTorusd } from "./_torusd.ts";

/** How long every node may take to show up as a ring member in list-peers. */
export const MEMBERS_TIMEOUT_MS = 30_000;
/** The peer port of nodes in their own network namespace (each has its own address). */
const NETNS_PEER_PORT = 40000;
/** What installs `ip`. */
const IPROUTE_HINT = "apt-get install -y iproute2";
/** How many lines of each process's log a failure quotes. */
const LOG_TAIL_LINES = 40;

/** Options of {@linkcode TestCluster.start}. */
export interface ClusterOptions {
  /** Storage nodes to start (default 3). */
  nodes?: number;
  /** `--size` of each node's block store (default 256MiB). */
  storeSize?: string;
  /** More flags for every torusd. */
  nodeArgs?: string[];
  /**
   * Run each node in its own network namespace (needs root and `ip`):
   * addresses 10.77.S.(10 + i)/24 on veth pairs to a bridge in the root
   * namespace holding 10.77.S.1, where etcd listens and clients run.
   */
  netns?: boolean;
}

/** One storage node (its process comes and goes; its data directory and address stay). */
export interface ClusterNodeInfo {
  index: number;
  dataDir: string;
  /** `tdp://HOST:PORT`, fixed at first start so a restart keeps it. */
  peerAddress: string;
  /** The node's uuid, known after its first start. */
  uuid: string;
  /** The running torusd, or null while it is down. */
  process: DaemonProcess | null;
  /** The node's network namespace, when running in one. */
  netns?: string;
  /** The root-namespace end of the node's veth pair (cut it to partition the node). */
  hostLink?: string;
  /** `http://127.0.0.1:<port>` of its `/healthz` and `/metrics` while it runs (not in a netns). */
  httpUrl?: string;
}

/** The line torusd and torusblk log once `/metrics` is served; group 1 is the base URL. */
const HTTP_STATUS_LINE = /HTTP status on (http:\/\/127\.0\.0\.1:\d+)\/metrics/;

/** A `torusblk nbdserve` client of the cluster. */
export interface NbdClient {
  process: DaemonProcess;
  port: number;
  /** `nbd://127.0.0.1:<port>/<name>`. */
  uri(name?: string): string;
  /** `http://127.0.0.1:<port>` of its `/healthz` and `/metrics`. */
  httpUrl: string;
}

/** A row of `torusctl list-peers -o json`. */
export interface PeerRowJson {
  address: string;
  uuid: string;
  sizeBytes: number | null;
  usedBytes: number | null;
  member: "OK" | "Avail" | "DOWN";
  lastSeenMs: number;
  rebalancing: boolean;
}

/** A free TCP port on `hostname` (free when asked). */
function freePort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  try {
    return (listener.addr as Deno.NetAddr).port;
  } finally {
    listener.close();
  }
}

/** Runs `ip ARGS` and throws with its stderr unless it succeeds. */
async function ip(...args: string[]): Promise<void> {
  const output = await new Deno.Command(await requireTool("ip"), {
    args,
    env: { PATH: toolPath() },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`ip ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
}

/** Throws naming what is missing unless this process can make network namespaces. */
export async function requireNetns(): Promise<string> {
  if (Deno.uid() !== 0) {
    throw new Error(
      "The network namespace scenario needs root (ip netns add, veth pairs, a bridge): " +
        "run the tests as root (for example in a container with CAP_NET_ADMIN and CAP_SYS_ADMIN)",
    );
  }
  try {
    return await requireTool("ip");
  } catch (error) {
    throw new Error(
      `The network namespace scenario needs the ip command: install it with "${IPROUTE_HINT}"`,
      { cause: error },
    );
  }
}

/** A /24 of 10.77.0.0/16 no interface of this machine uses yet. */
async function freeSubnet(): Promise<number> {
  const output = await new Deno.Command(await requireTool("ip"), {
    args: ["-o", "-4", "addr", "show"],
    stdout: "piped",
    stderr: "null",
  }).output();
  const used = new TextDecoder().decode(output.stdout);
  for (let i = 0; i < 250; i++) {
    const subnet = 2 + (Deno.pid + i) % 250;
    if (!used.includes(` 10.77.${subnet}.`)) return subnet;
  }
  throw new Error("Cannot pick a subnet: every 10.77.S.0/24 is in use on this machine");
}

/** The variable every process of a cluster has in its environment: the cluster's directory. */
const MARKER = "TORUS_TEST_CLUSTER";

/**
 * A shell that waits for end of file on its stdin (the test process exited
 * or closed it) and then kills every process listed in `pidFile` that still
 * runs with `{@linkcode MARKER}=directory` in its environment, runs
 * `cleanup` (deleting links and namespaces) and removes `directory`. After a
 * normal close there is nothing left for it to do. As with etcd's watchdog,
 * the waiting runs in an orphaned background subshell, which outlives `deno
 * test` killing the processes a module spawned.
 */
function spawnWatchdog(pidFile: string, directory: string, cleanup: string): Deno.ChildProcess {
  const script = 'read _ <&3; for pid in $(cat "$1" 2>/dev/null); do ' +
    'case " $(tr "\\0" " " < "/proc/$pid/environ" 2>/dev/null)" in ' +
    `*" ${MARKER}=$2 "*) kill -KILL "$pid" 2>/dev/null;; esac; done; ` +
    `${cleanup}; rm -rf "$2"`;
  return new Deno.Command("sh", {
    args: ["-c", `exec 3<&0; (${script}) & wait`, "torus-cluster-watchdog", pidFile, directory],
    stdin: "piped",
    stdout: "null",
    stderr: "null",
    env: { PATH: toolPath() },
  }).spawn();
}

/** Clusters in namespaces this process started (for unique names). */
let netnsClusters = 0;

/** The network of a cluster whose nodes run in namespaces. */
interface Netns {
  subnet: number;
  bridge: string;
  /** Namespaces created so far. */
  namespaces: string[];
  /** Root-namespace ends of the veth pairs created so far. */
  links: string[];
}

/** A cluster of real processes; see the module documentation. */
export class TestCluster {
  readonly etcd: EtcdServer;
  /** The temporary directory (data directories, files of the test). */
  readonly dir: string;
  readonly nodes: ClusterNodeInfo[] = [];
  readonly clients: NbdClient[] = [];
  readonly options: ClusterOptions;
  #netns: Netns | null;
  #pidFile: string;
  #watchdog: Deno.ChildProcess;
  #closed = false;
  /** Processes that ran and stopped, for the logs of a failure. */
  #stopped: { name: string; process: DaemonProcess }[] = [];

  private constructor(
    etcd: EtcdServer,
    dir: string,
    netns: Netns | null,
    watchdog: Deno.ChildProcess,
    options: ClusterOptions,
  ) {
    this.etcd = etcd;
    this.dir = dir;
    this.#netns = netns;
    this.#pidFile = join(dir, "pids");
    this.#watchdog = watchdog;
    this.options = options;
  }

  /**
   * Starts etcd, runs `torusctl init`, starts the nodes and waits until
   * list-peers shows every one of them as a ring member. Everything started
   * is cleaned up when a step fails.
   */
  static async start(options: ClusterOptions = {}): Promise<TestCluster> {
    const count = options.nodes ?? 3;
    if (options.netns) await requireNetns();
    const dir = await Deno.makeTempDir({ prefix: "torus-cluster-" });
    let netns: Netns | null = null;
    const cleanups: string[] = [];
    if (options.netns) {
      // Unique on this machine: this process's pid and a letter per cluster it started.
      const tag = `${Deno.pid}${String.fromCharCode(97 + netnsClusters++ % 26)}`;
      netns = { subnet: await freeSubnet(), bridge: `tb${tag}`, namespaces: [], links: [] };
      for (let i = 0; i < count; i++) {
        // Deleting the namespace is not enough: sockets left in it can keep it, and its links, alive.
        cleanups.push(
          `ip link del tv${tag}x${i} 2>/dev/null`,
          `ip netns del tn${tag}x${i} 2>/dev/null`,
        );
      }
      cleanups.push(`ip link del ${netns.bridge} 2>/dev/null`);
    }
    const watchdog = spawnWatchdog(join(dir, "pids"), dir, cleanups.join("; ") || "true");
    let etcd: EtcdServer | null = null;
    let cluster: TestCluster | null = null;
    try {
      if (netns) await setUpBridge(netns);
      etcd = await startEtcd(netns ? { host: `10.77.${netns.subnet}.1` } : {});
      cluster = new TestCluster(etcd, dir, netns, watchdog, options);
      await cluster.torusctlOk("init");
      for (let i = 0; i < count; i++) {
        const dataDir = join(dir, `node${i}`);
        let peerAddress: string;
        const node: ClusterNodeInfo = {
          index: i,
          dataDir,
          peerAddress: "",
          uuid: "",
          process: null,
        };
        if (netns) {
          const tag = netns.bridge.slice(2);
          node.netns = `tn${tag}x${i}`;
          node.hostLink = `tv${tag}x${i}`;
          const address = `10.77.${netns.subnet}.${10 + i}`;
          await setUpNamespace(netns, node.netns, node.hostLink, `tp${tag}x${i}`, address);
          peerAddress = `tdp://${address}:${NETNS_PEER_PORT}`;
        } else {
          peerAddress = `tdp://127.0.0.1:${freePort()}`;
        }
        node.peerAddress = peerAddress;
        cluster.nodes.push(node);
      }
      await Promise.all(cluster.nodes.map((node) => cluster!.startNode(node.index)));
      await cluster.waitForMembers(count);
      return cluster;
    } catch (error) {
      if (cluster) {
        cluster.dumpLogs("cluster start-up failed");
        await cluster.close();
      } else {
        await etcd?.close();
        await closeWatchdog(watchdog);
        await removeNetns(netns);
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
      throw error;
    }
  }

  /** `--etcd ENDPOINT`, for commands of this cluster. */
  get etcdFlags(): string[] {
    return ["--etcd", this.etcd.endpoint];
  }

  /** Runs `torusctl ARGS --etcd ENDPOINT`. */
  torusctl(...args: string[]): Promise<CommandResult> {
    return run("torusctl", [...args, ...this.etcdFlags]);
  }

  /** Runs torusctl and returns its stdout; throws with its stderr unless it exits 0. */
  async torusctlOk(...args: string[]): Promise<string> {
    const result = await this.torusctl(...args);
    assert.equal(
      result.code,
      0,
      `torusctl ${args.join(" ")} exited ${result.code}: ${result.stderr}`,
    );
    return result.stdout;
  }

  /** `torusctl list-peers -o json`. */
  async listPeers(): Promise<PeerRowJson[]> {
    return JSON.parse(await this.torusctlOk("list-peers", "-o", "json"));
  }

  /**
   * Waits until list-peers shows `count` rows, every one a live ring member
   * (`OK`) and, with `seenSinceMs`, registered (a heartbeat) since then.
   */
  async waitForMembers(
    count: number,
    options: { seenSinceMs?: number; timeoutMs?: number } = {},
  ): Promise<PeerRowJson[]> {
    const timeoutMs = options.timeoutMs ?? MEMBERS_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const rows = await this.listPeers();
      if (
        rows.length === count && rows.every((row) => row.member === "OK") &&
        rows.every((row) => row.lastSeenMs >= (options.seenSinceMs ?? 0))
      ) {
        return rows;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `list-peers did not show ${count} members OK${
            options.seenSinceMs ? `, seen since ${options.seenSinceMs},` : ""
          } within ${timeoutMs} ms: ${JSON.stringify(rows)}`,
        );
      }
      await delay(250);
    }
  }

  /** Starts node `index` (again) on its data directory and address; resolves once it serves peers. */
  async startNode(index: number): Promise<void> {
    this.#checkOpen();
    const node = this.nodes[index]!;
    assert.equal(node.process, null, `node ${index} is running`);
    const { process, match } = await startProcess({
      binary: "torusd",
      args: [
        ...this.etcdFlags,
        "--data-dir",
        node.dataDir,
        "--size",
        this.options.storeSize ?? "256MiB",
        "--peer-address",
        node.peerAddress,
        "--auto-join",
        // In a namespace, its loopback cannot be reached from here.
        ...(node.netns ? [] : ["--http", "127.0.0.1:0"]),
        ...(this.options.nodeArgs ?? []),
      ],
      wrapper: node.netns ? [await requireTool("ip"), "netns", "exec", node.netns] : undefined,
      env: { [MARKER]: this.dir },
      spawned: (pid) => this.#notePid(pid),
      ready: (log) =>
        allMatch(log, [
          /node (\S+) of the cluster at .*: serving peers at /,
          ...(node.netns ? [] : [HTTP_STATUS_LINE]),
        ]),
    });
    await this.#checkStillOpen(process);
    node.process = process;
    node.uuid = match[0]![1]!;
    node.httpUrl = match[1]?.[1];
  }

  /** Kills node `index` with SIGKILL (like a crash or a power cut) and waits for it to exit. */
  async killNode(index: number): Promise<void> {
    await this.stopNode(index, "SIGKILL");
  }

  /** Stops node `index` with `signal` (SIGTERM: a clean shutdown) and returns its status. */
  async stopNode(index: number, signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    const node = this.nodes[index]!;
    const process = node.process;
    assert.ok(process, `node ${index} is not running`);
    try {
      return await stopTorusd(process, signal);
    } finally {
      node.process = null;
      this.#stopped.push({ name: `node${index} (stopped)`, process });
    }
  }

  /** Kills node `index` and starts it again on the same data directory and address. */
  async restartNode(index: number): Promise<void> {
    await this.killNode(index);
    await this.startNode(index);
  }

  /** Takes node `index`'s link down (netns only): the node is partitioned away, still running. */
  async cutLink(index: number): Promise<void> {
    const link = this.nodes[index]?.hostLink;
    assert.ok(link, "cutLink needs a cluster started with netns: true");
    await ip("link", "set", link, "down");
  }

  /** Brings node `index`'s link back up. */
  async restoreLink(index: number): Promise<void> {
    const link = this.nodes[index]?.hostLink;
    assert.ok(link, "restoreLink needs a cluster started with netns: true");
    await ip("link", "set", link, "up");
  }

  /** Starts a `torusblk nbdserve` client on a free port of 127.0.0.1. */
  async startClient(extra: string[] = []): Promise<NbdClient> {
    this.#checkOpen();
    const { process, match } = await startProcess({
      binary: "torusblk",
      args: ["nbdserve", ...this.etcdFlags, "-l", "127.0.0.1:0", "--http", "127.0.0.1:0", ...extra],
      env: { [MARKER]: this.dir },
      spawned: (pid) => this.#notePid(pid),
      ready: (log) => allMatch(log, [/NBD on 127\.0\.0\.1:(\d+)/, HTTP_STATUS_LINE]),
    });
    await this.#checkStillOpen(process);
    const port = Number(match[0]![1]);
    const client = {
      process,
      port,
      uri: (name = "") => `nbd://127.0.0.1:${port}/${name}`,
      httpUrl: match[1]![1]!,
    };
    this.clients.push(client);
    return client;
  }

  /** Stops a client with SIGTERM (it flushes and releases its locks) and asserts that it exited 0. */
  async stopClient(client: NbdClient): Promise<void> {
    const index = this.clients.indexOf(client);
    if (index >= 0) this.clients.splice(index, 1);
    this.#stopped.push({ name: `client :${client.port} (stopped)`, process: client.process });
    const status = await stopTorusd(client.process, "SIGTERM");
    assert.equal(
      status.code,
      0,
      `torusblk exited ${status.code} (signal ${status.signal}):\n${client.process.log.join("\n")}`,
    );
  }

  /** Prints the end of every process's log (for a failed test). */
  dumpLogs(why: string): void {
    const all = [
      ...this.#stopped,
      ...this.nodes.filter((node) => node.process).map((node) => ({
        name: `node${node.index} ${node.uuid}`,
        process: node.process!,
      })),
      ...this.clients.map((client) => ({
        name: `client :${client.port}`,
        process: client.process,
      })),
    ];
    const parts = all.map(({ name, process }) =>
      `--- ${name} (pid ${process.child.pid}):\n${process.log.slice(-LOG_TAIL_LINES).join("\n")}`
    );
    console.error(`${why}; process logs:\n${parts.join("\n")}`);
  }

  /** Notes a process for the watchdog as soon as it is spawned. */
  #notePid(pid: number): void {
    Deno.writeTextFileSync(this.#pidFile, `${pid}\n`, { append: true });
  }

  /** Kills a process that got ready after close() (a test that timed out), and throws. */
  async #checkStillOpen(process: DaemonProcess): Promise<void> {
    if (!this.#closed) return;
    await stopTorusd(process, "SIGKILL").catch(() => {});
    throw new Error("Cannot start a process: the cluster is closed");
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error("Cannot start a process: the cluster is closed");
  }

  /**
   * Kills every client and node (SIGKILL: a test that wants a clean stop
   * does it itself), deletes the namespaces and links, stops etcd and
   * removes the temporary directory. Idempotent; never throws for a
   * process that is already gone.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const processes = [
      ...this.clients.map((client) => client.process),
      ...this.nodes.flatMap((node) => node.process ? [node.process] : []),
    ];
    this.clients.length = 0;
    for (const node of this.nodes) node.process = null;
    await Promise.all(processes.map((process) => stopTorusd(process, "SIGKILL").catch(() => {})));
    const errors: unknown[] = [];
    await removeNetns(this.#netns).catch((error) => errors.push(error));
    await this.etcd.close().catch((error) => errors.push(error));
    await closeWatchdog(this.#watchdog);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    if (errors.length > 0) throw errors[0];
  }
}

async function closeWatchdog(watchdog: Deno.ChildProcess): Promise<void> {
  await watchdog.stdin.close().catch(() => {});
  await watchdog.status;
}

async function setUpBridge(netns: Netns): Promise<void> {
  await ip("link", "add", netns.bridge, "type", "bridge");
  // Bridged frames between the nodes must not go through the host's iptables.
  await ip("link", "set", netns.bridge, "type", "bridge", "nf_call_iptables", "0")
    .catch(() => {});
  await ip("addr", "add", `10.77.${netns.subnet}.1/24`, "dev", netns.bridge);
  await ip("link", "set", netns.bridge, "up");
}

async function setUpNamespace(
  netns: Netns,
  name: string,
  hostLink: string,
  nsLink: string,
  address: string,
): Promise<void> {
  await ip("netns", "add", name);
  netns.namespaces.push(name);
  await ip("link", "add", hostLink, "type", "veth", "peer", "name", nsLink);
  netns.links.push(hostLink);
  await ip("link", "set", nsLink, "netns", name);
  await ip("link", "set", hostLink, "master", netns.bridge, "up");
  await ip("-n", name, "addr", "add", `${address}/24`, "dev", nsLink);
  await ip("-n", name, "link", "set", nsLink, "up");
  await ip("-n", name, "link", "set", "lo", "up");
}

/**
 * Deletes the veth pairs, the namespaces and the bridge. (A namespace outlives
 * its name while sockets in it, such as orphaned connections retransmitting
 * into a cut link, hold it, and its links with it: they are deleted first.)
 */
async function removeNetns(netns: Netns | null): Promise<void> {
  if (netns === null) return;
  const errors: unknown[] = [];
  for (const link of netns.links) {
    await ip("link", "del", link).catch((error) => {
      if (!/Cannot find device/.test(String(error))) errors.push(error);
    });
  }
  netns.links.length = 0;
  for (const name of netns.namespaces) {
    await ip("netns", "del", name).catch((error) => errors.push(error));
  }
  netns.namespaces.length = 0;
  await ip("link", "del", netns.bridge).catch((error) => {
    if (!/Cannot find device/.test(String(error))) errors.push(error);
  });
  if (errors.length > 0) throw errors[0];
}

/** How long a body may still take to unwind once its cluster was killed for a timeout. */
const UNWIND_MS = 10_000;

/**
 * Starts a cluster, runs `body`, and always closes it; when the body fails,
 * prints the end of every process's log first. With `timeoutMs`, a body
 * (start-up included) that runs longer fails: its cluster is killed, which
 * makes whatever it waits for fail, and the test does not wait more than a
 * few seconds for it to unwind.
 */
export async function withCluster(
  options: ClusterOptions & { timeoutMs?: number },
  body: (cluster: TestCluster) => Promise<void>,
): Promise<void> {
  const started = Date.now();
  let cluster: TestCluster | null = null;
  let abandoned = false;
  const run = (async () => {
    const started = await TestCluster.start(options);
    if (abandoned) {
      await started.close();
      return;
    }
    cluster = started;
    await body(started);
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeoutMs = options.timeoutMs ?? Infinity;
  const timedOut = new Promise<"timeout">((resolve) => {
    if (timeoutMs !== Infinity) timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    if ((await Promise.race([run, timedOut])) === "timeout") {
      abandoned = true;
      const unwound = run.catch(() => {});
      const current = cluster as TestCluster | null;
      current?.dumpLogs(`timed out after ${timeoutMs} ms`);
      await current?.close();
      await Promise.race([unwound, delay(UNWIND_MS)]);
      throw new Error(`the test took longer than ${timeoutMs} ms (${Date.now() - started} ms)`);
    }
  } catch (error) {
    const current = cluster as TestCluster | null;
    if (!/^the test took longer/.test((error as Error).message)) {
      current?.dumpLogs(`test failed: ${(error as Error).message.split("\n")[0]}`);
    }
    throw error;
  } finally {
    clearTimeout(timer);
    await (cluster as TestCluster | null)?.close();
  }
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
