/**
 * @module
 * Runs programs in an isolated, loopback-only Linux network namespace whose
 * only way out is a bridge, controlled by the test, to chosen TCP addresses
 * of the root namespace. Used by the real-iroh interop tests, and meant for
 * benchmarks and Delta Chat end-to-end tests too.
 *
 * Why: real iroh endpoints on one machine hole-punch over 127.0.0.1 at once
 * (so data would skip the relay under test), and send UPnP multicast out of
 * the machine's real interface even when bound to loopback. In a namespace
 * of its own an endpoint sees only its own `lo`: every byte it exchanges with
 * the world goes through the bridge.
 *
 * Flow of {@link Netns.create}:
 * - the test process serves one Unix socket per forward (filesystem sockets
 *   cross network namespaces) and pipes each connection to the forward's TCP
 *   target, optionally rewriting the first HTTP request head, observing the
 *   first response head and tapping the bytes;
 * - `unshare --net` starts `netns_bridge.cjs`, which brings `lo` up and
 *   listens on `127.0.0.1:<port>` inside the namespace, piping each
 *   connection to the Unix socket; it prints `ready`, and its pid names the
 *   namespace;
 * - {@link Netns.spawn} runs commands inside with `nsenter --net`, with
 *   line-oriented stdin/stdout ({@link LineProcess}, `line_process.ts`).
 *
 * Cleanup ({@link Netns.close}, also `await using`): stop every spawned
 * process (stdin closed, then SIGTERM, then SIGKILL, each bounded in time),
 * end the bridge (the namespace disappears with its last process), close the
 * sockets and remove the temporary directory. The bridge and
 * `iroh_peer.cjs` exit on end of stdin, so even a killed test process leaves
 * no process or namespace behind.
 *
 * Requires root (or CAP_SYS_ADMIN), `unshare`, `nsenter`, `ip` and `node`.
 *
 * @example
 * ```ts ignore
 * await using ns = await Netns.create([{ port: 3340, target: { hostname: "127.0.0.1", port: relayPort } }]);
 * await using p = ns.spawn("node", ["peer.cjs"]);
 * const line = await p.nextLine({ timeoutMs: 10_000 });
 * ```
 */

import { LineProcess, type SpawnOptions } from "./line_process.ts";

export { LineProcess, type NextLineOptions, type SpawnOptions, type StopOptions } from "./line_process.ts";

/** A TCP address in the root namespace. */
export interface TcpTarget {
  /** Host name or IP, usually `127.0.0.1`. */
  hostname: string;
  /** TCP port. */
  port: number;
}

/** Direction of bridged bytes: `up` is namespace → target, `down` the reply. */
export type BridgeDirection = "up" | "down";

/** Which bridged connection a hook call is about. */
export interface BridgeConnInfo {
  /** Sequence number of the connection on its forward, from 1. */
  conn: number;
}

/** Optional HTTP awareness of a forward; applies to the first request and response of each connection. */
export interface HttpHeadHooks {
  /**
   * Rewrites the first request head of each connection (the text up to and
   * excluding the blank line, lines joined by CRLF). Later requests on a
   * keep-alive connection pass unchanged.
   */
  rewriteRequest?: (head: string, info: BridgeConnInfo) => string;
  /** Sees the first response head of each connection (same form); bytes pass unchanged. */
  onResponse?: (head: string, info: BridgeConnInfo) => void;
}

/** One port forwarded from inside the namespace to the root namespace. */
export interface ForwardSpec {
  /** Port the bridge listens on at `127.0.0.1` inside the namespace. */
  port: number;
  /** Where connections go in the root namespace. */
  target: TcpTarget;
  /** Header rewriting and observation, for HTTP traffic. */
  http?: HttpHeadHooks;
  /** Sees every chunk of bridged bytes (after any rewrite, heads included), e.g. for debugging. */
  tap?: (dir: BridgeDirection, bytes: Uint8Array, info: BridgeConnInfo) => void;
}

/** Traffic counters of one forward. */
export interface ForwardStats {
  /** Connections accepted from inside the namespace. */
  connections: number;
  /** Bytes sent from the namespace to the target (after any rewrite). */
  bytesUp: number;
  /** Bytes sent from the target back into the namespace. */
  bytesDown: number;
}

/** Options of {@link Netns.create}. */
export interface NetnsOptions {
  /** Node executable that runs the bridge (default `node` from `PATH`). */
  node?: string;
  /** Bound on the bridge coming up, ms (default 10 000). */
  readyTimeoutMs?: number;
}

/** Largest HTTP head the bridge parses, bytes; a bigger one passes through unparsed. */
const MAX_HTTP_HEAD_BYTES = 64 * 1024;
/** Bridge read buffer, bytes. */
const PUMP_BUFFER_BYTES = 64 * 1024;

const enc = new TextEncoder();
const dec = new TextDecoder();
const CRLFCRLF = enc.encode("\r\n\r\n");

/** The root-namespace side of one forward: a Unix socket whose connections go to the TCP target. */
class ForwardServer {
  readonly spec: ForwardSpec;
  readonly socketPath: string;
  readonly stats: ForwardStats = { connections: 0, bytesUp: 0, bytesDown: 0 };
  readonly #listener: Deno.Listener;
  readonly #open = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #loop: Promise<void>;

  constructor(spec: ForwardSpec, socketPath: string) {
    this.spec = spec;
    this.socketPath = socketPath;
    this.#listener = Deno.listen({ transport: "unix", path: socketPath });
    this.#loop = this.#acceptLoop();
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let inner: Deno.Conn;
      try {
        inner = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      const info: BridgeConnInfo = { conn: ++this.stats.connections };
      const task = this.#serve(inner, info).finally(() => this.#tasks.delete(task));
      this.#tasks.add(task);
    }
  }

  async #serve(inner: Deno.Conn, info: BridgeConnInfo): Promise<void> {
    this.#open.add(inner);
    let outer: Deno.Conn | undefined;
    try {
      outer = await Deno.connect({ hostname: this.spec.target.hostname, port: this.spec.target.port });
      this.#open.add(outer);
      await Promise.all([this.#pump(inner, outer, "up", info), this.#pump(outer, inner, "down", info)]);
    } catch {
      // Target refused, or a side reset: the namespace side just sees the close.
    } finally {
      for (const c of [inner, outer]) {
        if (!c) continue;
        this.#open.delete(c);
        closeQuietly(c);
      }
    }
  }

  /** Copies `src` to `dst` until EOF, then half-closes `dst`; applies the HTTP hooks to the first head. */
  async #pump(src: Deno.Conn, dst: Deno.Conn, dir: BridgeDirection, info: BridgeConnInfo): Promise<void> {
    const hooks = this.spec.http;
    const wantsHead = dir === "up" ? hooks?.rewriteRequest : hooks?.onResponse;
    // Until the head is complete (or given up on), bytes collect here.
    let head: Uint8Array | null = wantsHead ? new Uint8Array(0) : null;
    const buf = new Uint8Array(PUMP_BUFFER_BYTES);
    try {
      for (;;) {
        const n = await src.read(buf);
        if (n === null) break;
        let out: Uint8Array = buf.subarray(0, n);
        if (head !== null) {
          head = concat(head, out);
          const end = indexOf(head, CRLFCRLF);
          if (end < 0 && head.length <= MAX_HTTP_HEAD_BYTES) {
            // Hold a request until it can be rewritten; a response flows at once (its copy waits in `head`).
            if (dir === "up") continue;
          } else if (end < 0) {
            out = dir === "up" ? head : out; // too big to be a head we care about: pass through
            head = null;
          } else {
            const text = dec.decode(head.subarray(0, end));
            if (dir === "up") {
              out = concat(enc.encode(hooks!.rewriteRequest!(text, info)), head.subarray(end));
            } else {
              hooks!.onResponse!(text, info);
            }
            head = null;
          }
        }
        if (dir === "up") this.stats.bytesUp += out.length;
        else this.stats.bytesDown += out.length;
        this.spec.tap?.(dir, out.slice(), info);
        await writeAll(dst, out);
      }
      await dst.closeWrite();
    } catch {
      // One side went away: end both so the other pump stops too.
      closeQuietly(src);
      closeQuietly(dst);
    }
  }

  async close(): Promise<void> {
    closeQuietly(this.#listener);
    for (const c of this.#open) closeQuietly(c);
    await this.#loop;
    await Promise.allSettled([...this.#tasks]);
  }
}

/**
 * An isolated network namespace with a loopback interface and the forwards
 * given at creation; see the module doc.
 */
export class Netns implements AsyncDisposable {
  /** Pid of the bridge, the namespace's first process; `nsenter -t <pid> -n` joins it. */
  readonly pid: number;
  readonly #bridge: LineProcess;
  readonly #forwards: ForwardServer[];
  readonly #dir: string;
  readonly #procs = new Set<LineProcess>();
  #closed = false;

  private constructor(bridge: LineProcess, forwards: ForwardServer[], dir: string) {
    this.#bridge = bridge;
    this.pid = bridge.pid;
    this.#forwards = forwards;
    this.#dir = dir;
  }

  /**
   * Creates the namespace and its bridge; resolves once every forward listens.
   * @param forwards ports to expose inside, each with its target outside
   * @param options node executable, readiness timeout
   * @throws {Error} if the bridge does not come up (message has its stderr)
   */
  static async create(forwards: ForwardSpec[], options: NetnsOptions = {}): Promise<Netns> {
    const ports = new Set(forwards.map((f) => f.port));
    if (ports.size !== forwards.length) throw new RangeError("Each forward needs its own port");
    const dir = await Deno.makeTempDir({ prefix: "netns-" });
    const servers: ForwardServer[] = [];
    let bridge: LineProcess | undefined;
    try {
      for (const f of forwards) servers.push(new ForwardServer(f, `${dir}/p${f.port}.sock`));
      const bridgeScript = new URL("./netns_bridge.cjs", import.meta.url).pathname;
      bridge = new LineProcess("unshare", [
        "--net",
        "--",
        "sh",
        "-c",
        // exec keeps the pid, so it names the namespace; lo starts down in a new namespace.
        'ip link set lo up && exec "$@"',
        "sh",
        options.node ?? "node",
        bridgeScript,
        ...servers.map((s) => `${s.spec.port}=${s.socketPath}`),
      ], { label: "netns bridge" });
      const ready = await bridge.nextLine({ timeoutMs: options.readyTimeoutMs ?? 10_000 });
      if (ready !== `ready ${bridge.pid}`) {
        throw new Error(`Unexpected bridge output: ${ready}\n${bridge.diagnostics()}`);
      }
      return new Netns(bridge, servers, dir);
    } catch (e) {
      await bridge?.stop({ graceMs: 1_000 });
      await Promise.all(servers.map((s) => s.close()));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw e;
    }
  }

  /**
   * Runs `cmd args` inside the namespace (via `nsenter --net`).
   * @param cmd executable (resolved by `nsenter` from `PATH`)
   * @param args arguments
   * @param options environment, working directory
   */
  spawn(cmd: string, args: string[], options: SpawnOptions = {}): LineProcess {
    if (this.#closed) throw new Error("Namespace is closed");
    const p = new LineProcess("nsenter", [`--net=/proc/${this.pid}/ns/net`, "--", cmd, ...args], {
      ...options,
      label: `${cmd} in netns ${this.pid}`,
    });
    this.#procs.add(p);
    return p;
  }

  /** Traffic counters of the forward listening on `port` inside the namespace. */
  stats(port: number): ForwardStats {
    const f = this.#forwards.find((s) => s.spec.port === port);
    if (!f) throw new RangeError(`No forward on port ${port}`);
    return f.stats;
  }

  /** Stops every spawned process and the bridge, closes the sockets, removes the temp dir. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#procs].map((p) => p.stop()));
    await this.#bridge.stop({ graceMs: 2_000 });
    await Promise.all(this.#forwards.map((s) => s.close()));
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }

  /** Same as {@link Netns.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

async function writeAll(w: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let off = 0; off < b.length;) off += await w.write(b.subarray(off));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function indexOf(h: Uint8Array, n: Uint8Array): number {
  outer: for (let i = 0; i + n.length <= h.length; i++) {
    for (let j = 0; j < n.length; j++) if (h[i + j] !== n[j]) continue outer;
    return i;
  }
  return -1;
}
