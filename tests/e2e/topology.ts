/**
 * @module
 * The network of the Delta Chat end-to-end test: two "phones" in network
 * namespaces of their own that reach the servers but not each other, and a
 * crash registry so a killed run leaves nothing behind for long.
 *
 * Why: two real iroh endpoints on one machine find each other over local
 * addresses at once, so realtime data would never touch the relay under
 * test. Like two phones behind separate NATs, each namespace here has one
 * route, to the service address, and no default route, so a packet to the
 * other phone (or anywhere outside this machine) fails with "network
 * unreachable" before it is sent.
 *
 * Layout ({@link E2E_NET}):
 * - `10.213.0.1/32` on the root namespace's `lo`: the service address every
 *   server the phones use listens on (IMAP proxy, SMTP, relay);
 * - namespace `dce2e-a`: veth `dce2e-a0` (root, `10.213.1.1/30`) ↔ `dce2e-a1`
 *   (inside, `10.213.1.2/30`), plus `lo`, plus route `10.213.0.1/32 via
 *   10.213.1.1`; namespace `dce2e-b` the same on `10.213.2.0/30`;
 * - root keeps `net.ipv4.ip_forward` as it is: nothing routes between the
 *   /30s anyway, because the namespaces have no route to each other.
 *
 * Crash registry ({@link Leftovers}): a state file in the temp dir lists the
 * running test's pid, the pids it started (with their start times, so a
 * reused pid is never killed) and its temp dirs. The next run first checks
 * that no other run is alive, then kills exactly those processes (and any
 * process still inside our namespaces), deletes the namespaces, veths and
 * the `lo` address, and removes the listed dirs.
 */

/** One phone's namespace. */
export interface PeerNet {
  /** Namespace name (`ip netns`). */
  ns: string;
  /** Root-side veth. */
  hostIf: string;
  /** Namespace-side veth. */
  nsIf: string;
  /** Root-side address of the /30. */
  hostAddr: string;
  /** Namespace-side address of the /30: where the phone's packets come from. */
  nsAddr: string;
}

/** Fixed names and addresses (a /16 from RFC 1918 that nothing else on a test machine should use). */
export const E2E_NET: { serviceAddr: string; peers: [PeerNet, PeerNet] } = {
  serviceAddr: "10.213.0.1",
  peers: [
    { ns: "dce2e-a", hostIf: "dce2e-a0", nsIf: "dce2e-a1", hostAddr: "10.213.1.1", nsAddr: "10.213.1.2" },
    { ns: "dce2e-b", hostIf: "dce2e-b0", nsIf: "dce2e-b1", hostAddr: "10.213.2.1", nsAddr: "10.213.2.2" },
  ],
};

const dec = new TextDecoder();

/** Runs a command, returns exit code and combined output; never throws for a non-zero exit. */
export async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).output();
  return { code: r.code, out: (dec.decode(r.stdout) + dec.decode(r.stderr)).trim() };
}

/** Runs a command and throws with its output if it fails. */
async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.code}): ${r.out}`);
  return r.out;
}

/** Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat), or null if it is gone. */
export function processStart(pid: number): string | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name (field 2) may contain spaces; fields after it are plain.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19] ?? null;
  } catch {
    return null;
  }
}

interface LeftoverState {
  owner: { pid: number; start: string | null };
  pids: { pid: number; start: string | null; what: string }[];
  dirs: string[];
}

/** Location of the crash registry (fixed, so the next run finds it). */
const STATE_FILE = `${Deno.env.get("TMPDIR") ?? "/tmp"}/deltachat-e2e.state.json`;

/**
 * The crash registry of this run; see the module doc. Every method writes
 * the state file at once, so a kill at any moment leaves it current.
 */
export class Leftovers {
  #state: LeftoverState;

  private constructor(state: LeftoverState) {
    this.#state = state;
  }

  /**
   * Cleans up after an earlier run that did not finish, then registers this
   * run as the owner.
   * @throws {Error} another run is still alive
   */
  static async claim(): Promise<Leftovers> {
    let old: LeftoverState | undefined;
    try {
      old = JSON.parse(await Deno.readTextFile(STATE_FILE)) as LeftoverState;
    } catch {
      // no earlier run, or an unreadable file: nothing to kill by pid
    }
    if (
      old && old.owner.pid !== Deno.pid && old.owner.start !== null && processStart(old.owner.pid) === old.owner.start
    ) {
      throw new Error(`Another e2e run is active (pid ${old.owner.pid}); wait for it or kill it, then retry`);
    }
    const notes: string[] = [];
    for (const p of old?.pids ?? []) {
      if (p.start !== null && processStart(p.pid) === p.start) {
        killQuietly(p.pid, "SIGKILL");
        notes.push(`killed leftover ${p.what} (pid ${p.pid})`);
      }
    }
    await removeNetwork(notes);
    for (const d of old?.dirs ?? []) {
      try {
        await Deno.remove(d, { recursive: true });
        notes.push(`removed leftover ${d}`);
      } catch {
        // already gone
      }
    }
    if (notes.length) console.error(`e2e: cleaned up an earlier run: ${notes.join("; ")}`);
    const self = new Leftovers({ owner: { pid: Deno.pid, start: processStart(Deno.pid) }, pids: [], dirs: [] });
    self.#save();
    return self;
  }

  /** Records a process this run started. */
  addPid(pid: number, what: string): void {
    this.#state.pids.push({ pid, start: processStart(pid), what });
    this.#save();
  }

  /** Records a temp dir this run created. */
  addDir(dir: string): void {
    this.#state.dirs.push(dir);
    this.#save();
  }

  /** Ends the registry after a clean shutdown. */
  async release(): Promise<void> {
    await Deno.remove(STATE_FILE).catch(() => {});
  }

  #save(): void {
    Deno.writeTextFileSync(STATE_FILE, JSON.stringify(this.#state));
  }
}

function killQuietly(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Deletes our namespaces (after killing any process still inside them: only
 * a run of this test puts processes there), veths and the service address.
 * Each step is idempotent; `notes` collects what was actually removed.
 */
export async function removeNetwork(notes: string[] = []): Promise<void> {
  const list = (await run("ip", ["netns", "list"])).out;
  for (const p of E2E_NET.peers) {
    if (!new RegExp(`^${p.ns}(\\s|$)`, "m").test(list)) continue;
    const pids = (await run("ip", ["netns", "pids", p.ns])).out.split(/\s+/).filter(Boolean).map(Number);
    for (const pid of pids) killQuietly(pid, "SIGKILL");
    if (pids.length) notes.push(`killed ${pids.length} process(es) in ${p.ns}`);
    await run("ip", ["netns", "del", p.ns]);
    notes.push(`deleted namespace ${p.ns}`);
  }
  for (const p of E2E_NET.peers) {
    // Deleting a namespace destroys its veth end and so the pair, but asynchronously; a pair whose namespace
    // side was never moved would survive.
    if ((await run("ip", ["link", "show", p.hostIf])).code === 0) {
      await run("ip", ["link", "del", p.hostIf]);
      notes.push(`deleted ${p.hostIf}`);
    }
  }
  const lo = (await run("ip", ["-o", "addr", "show", "dev", "lo"])).out;
  if (lo.includes(` ${E2E_NET.serviceAddr}/32 `)) {
    await run("ip", ["addr", "del", `${E2E_NET.serviceAddr}/32`, "dev", "lo"]);
    notes.push(`removed ${E2E_NET.serviceAddr} from lo`);
  }
}

/**
 * Creates the layout of the module doc. Call {@link removeNetwork} to undo
 * it (also after a partial failure).
 * @throws {Error} an `ip` command failed (message has its output)
 */
export async function createNetwork(): Promise<void> {
  const { serviceAddr } = E2E_NET;
  await must("ip", ["addr", "add", `${serviceAddr}/32`, "dev", "lo"]);
  for (const p of E2E_NET.peers) {
    await must("ip", ["netns", "add", p.ns]);
    await must("ip", ["link", "add", p.hostIf, "type", "veth", "peer", "name", p.nsIf, "netns", p.ns]);
    await must("ip", ["addr", "add", `${p.hostAddr}/30`, "dev", p.hostIf]);
    await must("ip", ["link", "set", p.hostIf, "up"]);
    await must("ip", ["-n", p.ns, "link", "set", "lo", "up"]);
    await must("ip", ["-n", p.ns, "addr", "add", `${p.nsAddr}/30`, "dev", p.nsIf]);
    await must("ip", ["-n", p.ns, "link", "set", p.nsIf, "up"]);
    await must("ip", ["-n", p.ns, "route", "add", `${serviceAddr}/32`, "via", p.hostAddr]);
  }
}

/**
 * Checks the layout: each namespace routes to the service address and has
 * no route to the other namespace or to the outside world.
 * @throws {Error} naming the route that is wrong
 */
export async function checkIsolation(): Promise<void> {
  const [a, b] = E2E_NET.peers;
  for (const [from, to] of [[a, b], [b, a]] as const) {
    const ok = await run("ip", ["-n", from.ns, "route", "get", E2E_NET.serviceAddr]);
    if (ok.code !== 0 || !ok.out.includes(`via ${from.hostAddr}`)) {
      throw new Error(`${from.ns} has no route to ${E2E_NET.serviceAddr}: ${ok.out}`);
    }
    for (const dst of [to.nsAddr, to.hostAddr, "192.0.2.1", "8.8.8.8"]) {
      const r = await run("ip", ["-n", from.ns, "route", "get", dst]);
      if (r.code === 0) throw new Error(`${from.ns} can route to ${dst}: ${r.out}`);
    }
  }
}
