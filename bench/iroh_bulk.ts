/**
 * @module
 * Scenario 6: real iroh 1.x endpoints (npm `@number0/iroh`) moving bulk data
 * through the relay only. Informational: the Node binding copies every chunk
 * through a JS array, so it, not the relay, may set the pace.
 *
 * It reuses the interop tests' isolation (`tests/support/netns.ts`,
 * `tests/support/iroh_peer.cjs`): each endpoint runs in its own loopback-only
 * network namespace whose only way out is a bridge to the relay, so hole
 * punching finds nothing and every QUIC packet crosses the relay. The
 * dialer sends `mib` MiB on one bidirectional stream and the acceptor echoes
 * it back as it arrives; the figure is payload MiB per second of the
 * dialer's send-and-read-echo time (the relay forwards twice that).
 *
 * {@link runIrohBulk} (used by `main.ts`) runs this file as a child process,
 * so the bridge's byte pumping is neither in the orchestrator nor in the
 * relay process. Missing prerequisites (support files, `node`, the binding,
 * permission to create namespaces) skip the scenario with a reason.
 */

import { Child, cpuSeconds } from "./_proc.ts";

/** Options of {@link runIrohBulk}. */
export interface IrohBulkOptions {
  /** Relay port on 127.0.0.1. */
  relayPort: number;
  /** Relay process, whose CPU time is read over the transfer. */
  relayPid?: number;
  /** Payload to send (and get echoed), MiB. */
  mib: number;
  /** Where to put the peers' diagnostics on failure. */
  resultsDir: string;
  /** Bound on the whole scenario, ms. */
  timeoutMs: number;
}

/** Outcome of {@link runIrohBulk}: a measurement, or why it was skipped. */
export interface IrohBulkResult {
  /** Set when the scenario could not run here. */
  skipped?: string;
  /** Payload MiB per second. */
  mibPerS?: number;
  /** Payload size, MiB. */
  mib?: number;
  /** Send-and-echo time, seconds. */
  seconds?: number;
  /** Relay CPU, percent of one core, from the dialer's connection to its last echoed byte. */
  relayCpuPct?: number;
}

const SUPPORT = new URL("../tests/support/", import.meta.url);
const PEER_SCRIPT = new URL("iroh_peer.cjs", SUPPORT).pathname;
const NETNS_MODULE = new URL("netns.ts", SUPPORT).href;
const BINDING = new URL("../node_modules/@number0/iroh/index.js", import.meta.url).pathname;
/** Where the relay appears inside each namespace. */
const RELAY_PORT_IN_NS = 3340;
const ALPN = "relay-bench/bulk/0";

/**
 * Runs the scenario in a child process.
 * @throws {Error} if the transfer fails once the endpoints are up
 */
export async function runIrohBulk(opts: IrohBulkOptions): Promise<IrohBulkResult> {
  const child = Child.spawn(Deno.execPath(), ["run", "-A", new URL(import.meta.url).pathname, JSON.stringify(opts)], {
    name: "iroh-bulk",
    stderrFile: `${opts.resultsDir}/iroh-bulk.log`,
  });
  try {
    const ev = await child.waitEvent("result", opts.timeoutMs);
    if (typeof ev.skipped === "string") return { skipped: ev.skipped };
    return {
      mibPerS: Number(ev.mib_s),
      mib: Number(ev.mib),
      seconds: Number(ev.seconds),
      relayCpuPct: Number(ev.relay_cpu_pct),
    };
  } finally {
    await child.stop();
  }
}

/** The part of `netns.ts` used here (loaded dynamically, so its absence is a skip, not a crash). */
interface LineProcessLike {
  nextLine(o: { timeoutMs: number; match?: (l: string) => boolean }): Promise<string>;
  send(line: string): Promise<void>;
  diagnostics(): string;
}
interface NetnsLike {
  spawn(cmd: string, args: string[]): LineProcessLike;
  close(): Promise<void>;
}
interface NetnsModule {
  Netns: { create(forwards: { port: number; target: { hostname: string; port: number } }[]): Promise<NetnsLike> };
}

function emit(event: string, fields: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ event, ...fields }));
}

async function nextEvent(p: LineProcessLike, event: string, timeoutMs: number): Promise<Record<string, unknown>> {
  const line = await p.nextLine({
    timeoutMs,
    match: (l) => l.startsWith("{") && [event, "error"].includes(JSON.parse(l).event),
  });
  const ev = JSON.parse(line);
  if (ev.event === "error") throw new Error(`iroh peer error: ${ev.message}\n${p.diagnostics()}`);
  return ev;
}

/** Why the scenario cannot run here, or null. */
async function missingPrerequisite(): Promise<string | null> {
  for (const f of [PEER_SCRIPT, new URL(NETNS_MODULE).pathname, BINDING]) {
    try {
      await Deno.stat(f);
    } catch {
      return `${f.replace(new URL("../", import.meta.url).pathname, "")} not found`;
    }
  }
  try {
    const out = await new Deno.Command("node", { args: ["-e", `require(${JSON.stringify(BINDING)})`], stderr: "piped" })
      .output();
    if (!out.success) {
      return `the @number0/iroh binding does not load: ${new TextDecoder().decode(out.stderr).split("\n")[0]}`;
    }
  } catch (e) {
    return `node is not available: ${(e as Error).message}`;
  }
  return null;
}

async function child(opts: IrohBulkOptions): Promise<void> {
  const why = await missingPrerequisite();
  if (why) return emit("result", { skipped: why });
  const { Netns } = await import(NETNS_MODULE) as NetnsModule;
  const forward = [{ port: RELAY_PORT_IN_NS, target: { hostname: "127.0.0.1", port: opts.relayPort } }];
  let nsA: NetnsLike, nsB: NetnsLike;
  try {
    nsA = await Netns.create(forward);
  } catch (e) {
    return emit("result", { skipped: `cannot create a network namespace: ${(e as Error).message.split("\n")[0]}` });
  }
  try {
    nsB = await Netns.create(forward);
  } catch (e) {
    await nsA.close();
    return emit("result", { skipped: `cannot create a network namespace: ${(e as Error).message.split("\n")[0]}` });
  }
  try {
    const relayUrl = `http://127.0.0.1:${RELAY_PORT_IN_NS}/`;
    const opTimeoutMs = Math.max(10_000, opts.timeoutMs - 20_000);
    const acceptor = nsA.spawn("node", [
      PEER_SCRIPT,
      JSON.stringify({ mode: "accept-echo", relayUrl, alpn: ALPN, opTimeoutMs }),
    ]);
    const id = String((await nextEvent(acceptor, "bound", 20_000)).id);
    await nextEvent(acceptor, "online", 20_000);
    const bytes = Math.round(opts.mib * (1 << 20));
    const dialer = nsB.spawn("node", [
      PEER_SCRIPT,
      JSON.stringify({ mode: "connect-send", relayUrl, alpn: ALPN, peerId: id, bytes, opTimeoutMs }),
    ]);
    await nextEvent(dialer, "connected", opTimeoutMs + 20_000);
    const cpu0 = opts.relayPid ? cpuSeconds(opts.relayPid) : NaN;
    const t0 = performance.now();
    const done = await nextEvent(dialer, "done", opTimeoutMs + 20_000);
    const relayCpuPct = (100 * (cpuSeconds(opts.relayPid ?? 0) - cpu0)) / ((performance.now() - t0) / 1000);
    if (done.intact !== true) throw new Error(`echo differs from the payload (${done.bytes} of ${bytes} bytes back)`);
    const paths = (done.paths ?? []) as { isSelected: boolean; isRelay: boolean }[];
    if (paths.some((p) => p.isSelected && !p.isRelay)) {
      throw new Error("the transfer used a direct path, not the relay");
    }
    const seconds = Number(done.elapsedMs) / 1000;
    emit("result", { mib: opts.mib, seconds, mib_s: opts.mib / seconds, relay_cpu_pct: relayCpuPct });
    await dialer.send("close");
  } finally {
    await Promise.allSettled([nsA.close(), nsB.close()]);
  }
}

if (import.meta.main) {
  try {
    await child(JSON.parse(Deno.args[0] ?? "{}") as IrohBulkOptions);
    Deno.exit(0);
  } catch (e) {
    emit("error", { message: (e as Error).message.split("\n")[0] });
    console.error((e as Error).message);
    Deno.exit(1);
  }
}
