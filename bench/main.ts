/**
 * @module
 * The relay benchmark (issue 5): `deno task bench [--quick]`.
 *
 * Over ~450 lines on purpose: this is the one runner, and every scenario
 * below shares its run record, process scope, timeouts and report table;
 * servers, load generators and the wire client already live in their own
 * files. Moving each scenario to a file of its own is the natural next
 * split, left for when the benchmark work in flight has settled.
 *
 * It starts the relay ({@link ./relay_server.ts}), the baselines and the
 * load generators ({@link ./loadgen.ts}) as separate processes, runs the
 * scenarios below, prints a table and, last, one line of JSON with every
 * figure. Figures that depend on the machine are ratios against a baseline
 * measured in the same run, because the machine is shared and noisy.
 *
 * 1. `throughput` (`forwarding.ts`): 1.x WebSocket path and 0.35 derp path
 *    against their limit baselines (`baseline_ws_raw.ts`, `baseline_tcp.ts`),
 *    in three traffic shapes (batched, unbatched, fan-in); `edge`: the relay
 *    core under `Deno.serve` (`edge_server.ts`) against `baseline_ws.ts`.
 * 2. `latency`: one-way p50/p99/p99.9 at a fixed 5,000 datagrams/s, both
 *    paths, relay vs baseline.
 * 3. `handshake`: authenticated clients per second in a connect storm
 *    (half 0.35, half 1.x, 256 in flight), on shared cores and pinned.
 * 4. `capacity`: as many idle authenticated clients as the fd limit allows
 *    (≤ 20,000, half each generation), a forwarding check among them, and
 *    relay RSS per client; `busy` (`busy.ts`): RSS per client with 5,000
 *    clients each exchanging a datagram per second.
 * 5. `iroh`: real iroh 1.x endpoints (`@number0/iroh`) moving bytes through
 *    the relay only (needs `tests/support/netns.ts`; skipped with a reason
 *    otherwise).
 * 6. `mesh`: the one-way latency a datagram gains when it crosses from one
 *    relay instance to another through the instance mesh (Redis pub/sub,
 *    Deno KV polled across processes, Deno KV woken by `watch`), against
 *    the same instance forwarding locally (issue 6; Redis parts skipped
 *    with a reason if `redis-server` cannot be installed).
 * 7. `discovery`: pkarr PUTs per second and UDP DNS queries per second
 *    against a UDP echo baseline (issue 11; `discovery.ts`).
 *
 * Flags: `--quick` (short runs, < 90 s), `--only=throughput,latency,...`,
 * `--cpu-prof` (profile the relay per scenario over the inspector; writes
 * `.cpuprofile` files and prints the hottest functions),
 * `--relay-log-level=debug|info|warn|error` (default: the relay's own default, info).
 * A `--` before the flags (as `deno task bench -- --quick` passes it) is ignored.
 *
 * A failing scenario is reported and the others still run; the JSON line is
 * always printed, and the exit code is 1 if any scenario failed.
 */

import { Child, cpuSeconds, fdLimit, loadAverage, raiseFdLimit, rssKiB, setAffinity } from "./_proc.ts";
import { type HotFunction, hotFunctions, Inspector, inspectorUrl } from "./_profile.ts";
import { type CapacitySpec, type HandshakeSpec, type LatencySpec, quantile } from "./loadgen.ts";
import {
  ALL_CHILDREN,
  BENCH_DIR,
  DENO,
  type Figure,
  fmt,
  guarded,
  type Measured,
  measured,
  metric,
  num,
  pad,
  type RelayProc,
  ROOT_DIR,
  round,
  type RunContext,
  Scope,
  scrape,
  verdict,
} from "./_harness.ts";
import { forwardingScenarios, forwardingTable } from "./forwarding.ts";
import { busyScenario, busyTable } from "./busy.ts";
import { runIrohBulk } from "./iroh_bulk.ts";
import { RedisServer } from "../tests/support/redis_server.ts";
import { DISCOVERY_TARGETS, runDiscoveryBench } from "./discovery.ts";

/** The scenarios, in run order. */
const SCENARIOS = [
  "throughput",
  "latency",
  "edge",
  "handshake",
  "iroh",
  "mesh",
  "capacity",
  "busy",
  "discovery",
] as const;
/** A scenario name. */
type Scenario = typeof SCENARIOS[number];

/** Run lengths and sizes; see {@link PLANS}. */
interface Plan {
  /** Datagram contents of the mesh latency runs, bytes. */
  payload: number;
  hsTotal: number;
  hsMaxMs: number;
  hsConcurrency: number;
  capTarget: number;
  capConcurrency: number;
  capCheckPairs: number;
  irohMiB: number;
  /** Mesh latency: pairs, total rate, warm-up and measuring time per round and side, rounds per side. */
  meshPairs: number;
  meshRate: number;
  meshWarmupMs: number;
  meshMeasureMs: number;
  meshRounds: number;
  /** Hard limit per scenario, ms. */
  scenarioTimeoutMs: Record<Scenario, number>;
}

/** Full and quick plans (the forwarding plans are in `forwarding.ts`). Full: about 7 minutes on 2 cores, quick: under 90 s. */
const PLANS: Record<"full" | "quick", Plan> = {
  full: {
    payload: 1200,
    hsTotal: 25_000,
    hsMaxMs: 5000,
    hsConcurrency: 256,
    capTarget: 20_000,
    capConcurrency: 128,
    capCheckPairs: 400,
    irohMiB: 64,
    meshPairs: 4,
    meshRate: 1000,
    meshWarmupMs: 500,
    meshMeasureMs: 1500,
    meshRounds: 2,
    scenarioTimeoutMs: {
      throughput: 0, // computed from the forwarding plan (forwarding.ts)
      latency: 0,
      edge: 0,
      handshake: 60_000,
      iroh: 90_000,
      mesh: 90_000,
      capacity: 120_000,
      busy: 90_000,
      discovery: 120_000,
    },
  },
  quick: {
    payload: 1200,
    hsTotal: 4000,
    hsMaxMs: 1500,
    hsConcurrency: 256,
    capTarget: 2000,
    capConcurrency: 128,
    capCheckPairs: 100,
    irohMiB: 8,
    meshPairs: 4,
    meshRate: 1000,
    meshWarmupMs: 200,
    meshMeasureMs: 500,
    meshRounds: 1,
    scenarioTimeoutMs: {
      throughput: 0,
      latency: 0,
      edge: 0,
      handshake: 20_000,
      iroh: 30_000,
      mesh: 30_000,
      capacity: 30_000,
      busy: 30_000,
      discovery: 45_000,
    },
  },
};

/** Targets from issues 5 and 14 (the forwarding and busy targets live in their scenario files). */
const TARGETS = {
  kibPerClient: 16,
  handshakeCpuUs: 150,
  handshakesPerS: 5000,
  clients: 20_000,
};

/** Parsed command line. */
interface Options {
  quick: boolean;
  only: Set<Scenario> | null;
  cpuProf: boolean;
  relayLogLevel: string | null;
}

/** Most clients one load-generator process holds; its children inherit our fd limit, so stay well below it. */
const CLIENTS_PER_GEN = Math.max(100, Math.min(10_000, Math.floor((fdLimit("self").soft - 200) / 2)));
/** Descriptors the relay keeps for itself beyond clients (runtime, listeners, log file): measured ~30, kept generous. */
const RELAY_FD_RESERVE = 200;

/** Parses flags; throws on unknown ones. */
export function parseOptions(args: string[]): Options {
  const o: Options = { quick: false, only: null, cpuProf: false, relayLogLevel: null };
  for (const a of args) {
    if (a === "--") continue;
    if (a === "--quick") o.quick = true;
    else if (a === "--cpu-prof") o.cpuProf = true;
    else if (a.startsWith("--only=")) {
      const names = a.slice(7).split(",").filter((s) => s !== "");
      for (const n of names) {
        if (!(SCENARIOS as readonly string[]).includes(n)) {
          throw new Error(`--only: unknown scenario "${n}" (${SCENARIOS.join(", ")})`);
        }
      }
      o.only = new Set(names as Scenario[]);
    } else if (a.startsWith("--relay-log-level=")) {
      const l = a.slice(18);
      if (!["debug", "info", "warn", "error"].includes(l)) {
        throw new Error(`--relay-log-level: expected debug, info, warn or error`);
      }
      o.relayLogLevel = l;
    } else throw new Error(`unknown flag ${a} (flags: --quick --only=a,b --cpu-prof --relay-log-level=L)`);
  }
  return o;
}

/** Everything one benchmark run collects. */
class Run implements RunContext {
  readonly opts: Options;
  readonly plan: Plan;
  readonly fig: Record<string, Figure> = {};
  readonly errors: Record<string, string> = {};
  readonly skipped: Record<string, string> = {};
  readonly profiles: Record<string, HotFunction[]> = {};
  readonly resultsDir: string;

  constructor(opts: Options, resultsDir: string) {
    this.opts = opts;
    this.plan = opts.quick ? PLANS.quick : PLANS.full;
    this.resultsDir = resultsDir;
  }

  /**
   * Starts a relay in `scope`, with the inspector when profiling; `extra`
   * adds TOML tables (after the top-level keys) and permissions.
   */
  async startRelay(scope: Scope, name: string, extra: { toml?: string; perms?: string[] } = {}): Promise<RelayProc> {
    const level = this.opts.relayLogLevel;
    const toml = [
      `http_bind_addr = "127.0.0.1:0"`,
      `enable_stun = false`,
      `enable_metrics = true`,
      `metrics_bind_addr = "127.0.0.1:0"`,
      // Every load generator connects from 127.0.0.1: the per-source admission limits (issue 9) would
      // refuse the handshake storm and the capacity run, so they are lifted here; the global cap too.
      "[limits]",
      "max_connections = 1000000",
      "connection_reserve = 0",
      "max_connections_per_source = 1000000",
      "source_connects_per_sec = 0",
      ...(level ? ["[log]", `level = "${level}"`] : []),
      ...(extra.toml ? [extra.toml] : []),
    ].join("\n");
    const perms = ["--allow-net", "--allow-read", "--allow-env", "--allow-sys=hostname", ...(extra.perms ?? [])];
    if (this.opts.cpuProf) perms.push("--inspect=127.0.0.1:0");
    const child = scope.deno(name, "relay_server.ts", perms, [toml], { stderrFile: `${this.resultsDir}/${name}.log` });
    const ev = await child.waitEvent("listening", 30_000);
    let inspector: Inspector | null = null;
    if (this.opts.cpuProf) {
      // Stderr is read concurrently with stdout: give the "Debugger listening" line a moment.
      let url = inspectorUrl(child.stderrTail);
      for (let i = 0; i < 50 && url === null; i++) {
        await new Promise((r) => setTimeout(r, 100));
        url = inspectorUrl(child.stderrTail);
      }
      if (url === null) throw new Error(`${name}: no inspector URL on stderr`);
      inspector = await Inspector.connect(url);
    }
    return { child, port: Number(ev.port), metricsPort: Number(ev.metricsPort), inspector };
  }

  /** Runs `fn` under a CPU profile of `relay` when profiling is on. */
  async profiled<T>(relay: RelayProc, label: string, fn: () => Promise<T>): Promise<T> {
    if (!relay.inspector) return await fn();
    await relay.inspector.start();
    try {
      return await fn();
    } finally {
      try {
        const profile = await relay.inspector.stop();
        await Deno.writeTextFile(`${this.resultsDir}/relay-${label}.cpuprofile`, JSON.stringify(profile));
        this.profiles[label] = hotFunctions(profile, 12);
      } catch (e) {
        this.profiles[label] = [{ where: `profile failed: ${(e as Error).message}`, selfPct: 0 }];
      }
    }
  }
}

/**
 * Scenario 5 of the issue: the connect storm, twice. First as before (both
 * sides share the two cores: `handshake_shared_*`, `handshakes_per_s_shared`
 * is the old `handshakes_per_s`), then with the relay pinned to CPU 0 and the
 * load generator to CPU 1 (`taskset`; other processes on the machine are not
 * pinned away): `handshakes_per_s`, `handshake_cpu_us` (issue 14). If pinning
 * fails, the headline figures come from the shared run and `handshake_pinned`
 * says why.
 */
async function handshakeScenario(run: Run, relay: RelayProc, scope: Scope): Promise<void> {
  const p = run.plan;
  const spec: HandshakeSpec = {
    mode: "handshake",
    port: relay.port,
    total: p.hsTotal,
    concurrency: p.hsConcurrency,
    maxMs: p.hsMaxMs,
  };
  const f = run.fig;
  const storm = async (label: string, cpus?: string): Promise<Measured> => {
    const m = await run.profiled(
      relay,
      label,
      () =>
        measured(scope, `loadgen-${label}`, spec, relay.child.pid, p.scenarioTimeoutMs.handshake / 2, {
          ...(cpus !== undefined ? { cpus } : {}),
        }),
    );
    if ((m.res.errors as string[]).length) f[`${label.replace("-", "_")}_errors`] = m.res.errors as string[];
    if (num(m.res.ok) === 0) throw new Error(`no handshake succeeded: ${(m.res.errors as string[]).join("; ")}`);
    return m;
  };
  const figures = (m: Measured, prefix: string) => {
    const ok = num(m.res.ok);
    f[`${prefix}_ok`] = ok;
    f[`${prefix}_failed`] = num(m.res.failed);
    f[`${prefix}_p50_ms`] = round(num(m.res.p50_ms), 1);
    f[`${prefix}_p99_ms`] = round(num(m.res.p99_ms), 1);
    f[`${prefix}_relay_cpu_pct`] = Math.round((100 * m.serverCpu) / m.wall);
    f[`${prefix}_gen_cpu_pct`] = Math.round((100 * m.genCpu) / m.wall);
    return { perS: Math.round(num(m.res.per_s)), cpuUs: Math.round((m.serverCpu * 1e6) / ok) };
  };
  const shared = figures(await storm("handshake-shared"), "handshake_shared");
  f.handshakes_per_s_shared = shared.perS;
  f.handshake_shared_cpu_us = shared.cpuUs;
  const cores = navigator.hardwareConcurrency;
  const pinErr = cores < 2 ? `${cores} CPU` : await setAffinity(relay.child.pid, "0");
  if (pinErr !== null) {
    f.handshake_pinned = `no: ${pinErr}`;
    f.handshakes_per_s = shared.perS;
    f.handshake_cpu_us = shared.cpuUs;
    return;
  }
  try {
    const pinned = figures(await storm("handshake", "1"), "handshake");
    f.handshake_pinned = "relay on CPU 0, load generator on CPU 1";
    f.handshakes_per_s = pinned.perS;
    f.handshake_cpu_us = pinned.cpuUs;
    // The old name of the per-handshake cost.
    f.handshake_relay_cpu_us_each = pinned.cpuUs;
  } finally {
    await setAffinity(relay.child.pid, `0-${cores - 1}`);
  }
}

/** Scenario 4 of the issue: idle clients, memory per client, forwarding among them. */
async function capacityScenario(run: Run, scope: Scope): Promise<void> {
  const p = run.plan;
  const f = run.fig;
  const relay = await run.startRelay(scope, "relay-capacity");
  const pid = relay.child.pid;
  let limit = fdLimit(pid);
  const need = p.capTarget + RELAY_FD_RESERVE;
  if (limit.soft < need) {
    const err = await raiseFdLimit(pid, need);
    f.fd_raise = err === null ? `raised to ${need}` : `could not raise to ${need}: ${err}`;
    limit = fdLimit(pid);
  }
  f.fd_limit = limit.soft;
  f.fd_limit_hard = limit.hard;
  const target = Math.min(p.capTarget, Math.floor((limit.soft - RELAY_FD_RESERVE) / 2) * 2);
  f.clients_target = p.capTarget;
  // Warm the handshake paths (JIT, lazily built structures) so "before" already holds that memory.
  await measured(
    scope,
    "capacity-warmup",
    { mode: "handshake", port: relay.port, total: 256, concurrency: 32, maxMs: 5000 },
    pid,
    20_000,
  );
  await new Promise((r) => setTimeout(r, 1000));
  const before = rssKiB(pid);
  const gens: Child[] = [];
  const nGens = Math.ceil(target / CLIENTS_PER_GEN);
  const t0 = performance.now();
  await run.profiled(relay, "capacity-connect", async () => {
    for (let g = 0; g < nGens; g++) {
      const first = Math.floor((g * target) / nGens);
      const count = Math.floor(((g + 1) * target) / nGens) - first;
      const spec: CapacitySpec = {
        mode: "capacity",
        port: relay.port,
        count,
        first,
        concurrency: Math.ceil(p.capConcurrency / nGens),
        checkPairs: Math.ceil(p.capCheckPairs / nGens),
      };
      gens.push(scope.deno(`capacity-gen-${g}`, "loadgen.ts", ["-A"], [JSON.stringify(spec)], { stdin: true }));
    }
    const connected = await Promise.all(gens.map((g) => g.waitEvent("connected", p.scenarioTimeoutMs.capacity)));
    const ok = connected.reduce((a, e) => a + num(e.ok), 0);
    f.capacity_failed = connected.reduce((a, e) => a + num(e.failed), 0);
    const errs = connected.flatMap((e) => e.errors as string[]);
    if (errs.length) f.capacity_errors = errs.slice(0, 3);
    f.clients = ok;
    f.capacity_connect_s = round((performance.now() - t0) / 1000, 2);
  });
  // Let the allocations of the connect phase settle before reading RSS.
  await new Promise((r) => setTimeout(r, run.opts.quick ? 1000 : 2000));
  const after = rssKiB(pid);
  const text = await scrape(relay.metricsPort);
  f.relay_clients_gauge = metric(text, "relayserver_clients");
  f.capacity_rss_before_mib = round(before / 1024, 1);
  f.capacity_rss_after_mib = round(after / 1024, 1);
  const clients = num(f.clients);
  f.kib_per_client = clients > 0 ? round((after - before) / clients, 2) : null;
  await Promise.all(gens.map((g) => g.send("check")));
  const checked = await Promise.all(gens.map((g) => g.waitEvent("checked", 30_000)));
  f.capacity_check_sent = checked.reduce((a, e) => a + num(e.sent), 0);
  f.capacity_check_delivered = checked.reduce((a, e) => a + num(e.delivered), 0);
  f.capacity_alive_at_check = checked.reduce((a, e) => a + num(e.alive), 0);
  await Promise.all(gens.map((g) => g.send("exit")));
  await Promise.all(gens.map((g) => g.waitEvent("done", 30_000).catch(() => {})));
  if (clients === 0) throw new Error(`no client connected: ${String(f.capacity_errors ?? "")}`);
  if (num(f.capacity_check_delivered) < num(f.capacity_check_sent)) {
    throw new Error(
      `forwarding check: ${f.capacity_check_delivered} of ${f.capacity_check_sent} datagrams delivered`,
    );
  }
}

/** One mesh backend under test: two relay instances and the process whose CPU the load generator reads. */
interface MeshPair {
  name: "redis" | "kv" | "kv_watch";
  portA: number;
  portB: number;
  pid: number;
}

/**
 * Scenario 6 (issue 6): one-way latency of datagrams crossing from one
 * relay instance to another through each mesh backend ("cross": senders on
 * A, receivers on B), against the same instance forwarding locally
 * ("local": both on A). Sides alternate and samples are pooled, as in the
 * latency scenario.
 *
 * - `redis`: two relay processes, `[mesh] backend = "redis"`, a throwaway
 *   loopback `redis-server` (skipped with the reason if it cannot be had);
 * - `kv`: two relay processes on one local KV file: across processes only
 *   the poll (default 20 ms) wakes the reader;
 * - `kv_watch`: two instances in one process with two KV handles, woken by
 *   `watch` as on Deno Deploy (without Deploy's network round trips).
 */
async function meshScenario(run: Run, scope: Scope): Promise<void> {
  const p = run.plan;
  const f = run.fig;
  const dir = await Deno.makeTempDir({ prefix: "bench-mesh-" });
  let redis: RedisServer | null = null;
  try {
    const starting: Promise<MeshPair | null>[] = [];
    starting.push((async () => {
      try {
        redis = await RedisServer.start();
      } catch (e) {
        run.skipped.mesh_redis = `redis-server unavailable: ${(e as Error).message.slice(0, 200)}`;
        return null;
      }
      const toml = (id: string) =>
        `[mesh]\nbackend = "redis"\nredis_url = "${redis!.url}"\nchannel_prefix = "bench"\ninstance_id = "${id}"`;
      const [a, b] = await Promise.all([
        run.startRelay(scope, "relay-mesh-redis-a", { toml: toml("a") }),
        run.startRelay(scope, "relay-mesh-redis-b", { toml: toml("b") }),
      ]);
      return { name: "redis", portA: a.port, portB: b.port, pid: a.child.pid };
    })());
    starting.push((async () => {
      const kvPerms = ["--allow-write", "--unstable-kv"];
      const toml = (id: string) => `[mesh]\nbackend = "kv"\nkv_path = "${dir}/kv.sqlite"\ninstance_id = "${id}"`;
      const [a, b] = await Promise.all([
        run.startRelay(scope, "relay-mesh-kv-a", { toml: toml("a"), perms: kvPerms }),
        run.startRelay(scope, "relay-mesh-kv-b", { toml: toml("b"), perms: kvPerms }),
      ]);
      return { name: "kv", portA: a.port, portB: b.port, pid: a.child.pid };
    })());
    starting.push((async () => {
      const c = Child.spawn(DENO, [
        "run",
        "-A",
        "--unstable-kv",
        BENCH_DIR + "mesh_pair_server.ts",
        `${dir}/watch.sqlite`,
      ], {
        name: "relay-mesh-kv-watch",
        cwd: ROOT_DIR,
        stderrFile: `${run.resultsDir}/relay-mesh-kv-watch.log`,
      });
      scope.adopt(c);
      const ev = await c.waitEvent("listening", 30_000);
      return { name: "kv_watch", portA: Number(ev.port), portB: Number(ev.port2), pid: c.pid };
    })());
    const pairs = (await Promise.all(starting)).filter((x): x is MeshPair => x !== null);
    f.mesh_kv_poll_ms = 20;
    const localAll: number[] = [];
    for (const pair of pairs) {
      const pooled = { local: [] as number[], cross: [] as number[] };
      const counts = { local: { sent: 0, received: 0 }, cross: { sent: 0, received: 0 } };
      for (let r = 0; r < p.meshRounds; r++) {
        const order: ("local" | "cross")[] = r % 2 === 0 ? ["local", "cross"] : ["cross", "local"];
        for (const side of order) {
          const spec: LatencySpec = {
            mode: "latency",
            port: pair.portA,
            rxPort: side === "cross" ? pair.portB : pair.portA,
            kind: "v2",
            pairs: p.meshPairs,
            rate: p.meshRate,
            payload: p.payload,
            warmupMs: p.meshWarmupMs,
            measureMs: p.meshMeasureMs,
          };
          const m = await measured(scope, `mesh-${pair.name}-${side}`, spec, pair.pid, 30_000);
          for (const us of m.res.samples_us as number[]) pooled[side].push(us / 1000);
          counts[side].sent += num(m.res.sent);
          counts[side].received += num(m.res.received);
        }
      }
      const b = pair.name;
      const cross = pooled.cross.sort((x, y) => x - y);
      const local = pooled.local.sort((x, y) => x - y);
      localAll.push(...local);
      f[`mesh_${b}_p50_ms`] = round(quantile(cross, 0.5), 3);
      f[`mesh_${b}_p99_ms`] = round(quantile(cross, 0.99), 3);
      f[`mesh_${b}_local_p50_ms`] = round(quantile(local, 0.5), 3);
      f[`mesh_${b}_local_p99_ms`] = round(quantile(local, 0.99), 3);
      // p50 is the steady figure; p99 differences on a shared machine are mostly scheduling noise.
      f[`mesh_${b}_added_p50_ms`] = round(quantile(cross, 0.5) - quantile(local, 0.5), 3);
      f[`mesh_${b}_delivered`] = `${counts.cross.received}/${counts.cross.sent}`;
      f[`mesh_${b}_local_delivered`] = `${counts.local.received}/${counts.local.sent}`;
    }
    const localSorted = localAll.sort((x, y) => x - y);
    f.mesh_local_p50_ms = round(quantile(localSorted, 0.5), 3);
    f.mesh_local_p99_ms = round(quantile(localSorted, 0.99), 3);
    if (run.skipped.mesh_redis) f.mesh_redis_status = `skipped: ${run.skipped.mesh_redis}`;
  } finally {
    await scope.close();
    await (redis as RedisServer | null)?.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

// ---------------------------------------------------------------- report

/** Renders the human-readable table. */
function table(run: Run): string {
  const f = run.fig;
  const p = run.plan;
  const out: string[] = [];
  const mode = run.opts.quick ? "quick" : "full";
  out.push(
    `iroh relay benchmark (${mode}) — ${f.date} — git ${f.git}${f.git_dirty ? " + uncommitted relay changes" : ""} — ` +
      `deno ${f.deno} — ${f.cores} cores, load ${f.loadavg_start}`,
  );
  out.push("Shared, noisy machine: compare ratios, not absolute numbers.");
  out.push("");
  const has = (k: string) => f[k] !== undefined && f[k] !== null;
  out.push(...forwardingTable(run));
  if (has("handshakes_per_s")) {
    const r = f.handshakes_per_s;
    const c = f.handshake_cpu_us;
    out.push(`5. Handshake storm: ${p.hsConcurrency} in flight, half 0.35 / half 1.x, connect → authenticated → close`);
    out.push(
      `   pinned (${f.handshake_pinned}): ${fmt(r)} handshakes/s (target ≥ ${TARGETS.handshakesPerS}: ${
        verdict(r, (x) => x >= TARGETS.handshakesPerS)
      }), relay ${fmt(c)} µs CPU each (target ≤ ${TARGETS.handshakeCpuUs}: ${
        verdict(c, (x) => x <= TARGETS.handshakeCpuUs)
      }); ${fmt(f.handshake_ok)} ok, ${fmt(f.handshake_failed)} failed; p50 ${fmt(f.handshake_p50_ms, 1)} ms, p99 ${
        fmt(f.handshake_p99_ms, 1)
      } ms; relay CPU ${fmt(f.handshake_relay_cpu_pct)}%, load generator CPU ${fmt(f.handshake_gen_cpu_pct)}%`,
    );
    out.push(
      `   shared cores: ${fmt(f.handshakes_per_s_shared)} handshakes/s, relay ${fmt(f.handshake_shared_cpu_us)} µs ` +
        `CPU each; ${fmt(f.handshake_shared_ok)} ok, ${fmt(f.handshake_shared_failed)} failed; relay CPU ${
          fmt(f.handshake_shared_relay_cpu_pct)
        }%, load generator CPU ${fmt(f.handshake_shared_gen_cpu_pct)}%`,
    );
    out.push("");
  }
  if (has("clients")) {
    const k = f.kib_per_client;
    // The memory target is stated at the largest count the fd limit allows; fixed costs dominate a small quick run.
    const atScale = num(f.clients) >= 0.9 * Math.min(TARGETS.clients, num(f.fd_limit) - RELAY_FD_RESERVE);
    const kibVerdict = atScale ? verdict(k, (x) => x <= TARGETS.kibPerClient) : `n/a at ${fmt(f.clients)} clients`;
    out.push(`4. Capacity: idle authenticated clients, half 0.35 / half 1.x`);
    out.push(
      `   ${fmt(f.clients)} clients connected of ${fmt(f.clients_target)} wanted (relay fd limit ${
        fmt(f.fd_limit)
      }, hard ${fmt(f.fd_limit_hard)}` +
        `${f.fd_raise ? `; ${f.fd_raise}` : ""}), ${fmt(f.capacity_failed)} failed, in ${
          fmt(f.capacity_connect_s, 1)
        } s; relay gauge ${fmt(f.relay_clients_gauge)}`,
    );
    out.push(
      `   relay RSS ${fmt(f.capacity_rss_before_mib, 1)} → ${fmt(f.capacity_rss_after_mib, 1)} MiB: ${
        fmt(k, 2)
      } KiB per client ` +
        `(target ≤ ${TARGETS.kibPerClient} at the most clients the fd limit allows: ${kibVerdict}); ` +
        `forwarding check ${fmt(f.capacity_check_delivered)}/${fmt(f.capacity_check_sent)} delivered`,
    );
    out.push("");
  }
  out.push(...busyTable(run));
  if (has("iroh_status")) {
    out.push(`6. Real iroh 1.x bulk transfer through the relay only (informational)`);
    out.push(
      f.iroh_bulk_mib_s !== undefined && f.iroh_bulk_mib_s !== null
        ? `   ${fmt(f.iroh_bulk_mib_s, 1)} MiB/s (${fmt(f.iroh_bulk_mib)} MiB echoed in ${fmt(f.iroh_bulk_s, 1)} s); ` +
          `relay CPU ${fmt(f.iroh_relay_cpu_pct)}% during the transfer`
        : `   ${f.iroh_status}`,
    );
    out.push("");
  }
  if (has("mesh_local_p50_ms")) {
    out.push(
      `7. Instance mesh: one-way latency at ${p.meshRate.toLocaleString("en-US")} datagrams/s over ${p.meshPairs} ` +
        `pairs, ${p.meshRounds} round(s) of ${p.meshMeasureMs / 1000} s per side; local = both ends on instance A`,
    );
    out.push("backend    cross p50 ms  cross p99 ms  local p50 ms  local p99 ms  added p50 ms  delivered");
    const label = { redis: "redis", kv: `kv (poll ${fmt(f.mesh_kv_poll_ms)} ms)`, kv_watch: "kv (watch)" };
    for (const b of ["redis", "kv", "kv_watch"] as const) {
      if (!has(`mesh_${b}_p50_ms`)) continue;
      out.push(
        [
          label[b].padEnd(17),
          pad(fmt(f[`mesh_${b}_p50_ms`], 3), 7),
          pad(fmt(f[`mesh_${b}_p99_ms`], 3), 13),
          pad(fmt(f[`mesh_${b}_local_p50_ms`], 3), 13),
          pad(fmt(f[`mesh_${b}_local_p99_ms`], 3), 13),
          pad(fmt(f[`mesh_${b}_added_p50_ms`], 3), 13),
          "  " + fmt(f[`mesh_${b}_delivered`]),
        ].join(" "),
      );
    }
    if (f.mesh_redis_status) out.push(`   redis: ${f.mesh_redis_status}`);
    out.push("");
  }
  if (has("dns_qps") || has("pkarr_puts_per_s")) {
    out.push("8. Discovery: pkarr PUTs (signature checks, SQLite) and UDP DNS TXT queries from a warm store");
    out.push(
      `pkarr PUT/s ${fmt(f.pkarr_puts_per_s)} (target ≥ ${DISCOVERY_TARGETS.putsPerS}); DNS ${fmt(f.dns_qps)} q/s vs ` +
        `UDP echo ${fmt(f.dns_echo_qps)}/s: ratio ${fmt(f.dns_ratio, 2)} (target ≥ ${DISCOVERY_TARGETS.dnsRatio}); ` +
        `server CPU µs/query ${fmt(f.dns_cpu_us_per_query, 1)} vs echo ${fmt(f.dns_echo_cpu_us_per_query, 1)}`,
    );
    out.push("");
  }
  for (const [label, hot] of Object.entries(run.profiles)) {
    out.push(`relay CPU profile, ${label} (self time):`);
    for (const h of hot) out.push(`   ${pad(h.selfPct.toFixed(1), 5)}%  ${h.where}`);
    out.push("");
  }
  for (const [name, why] of Object.entries(run.skipped)) out.push(`skipped ${name}: ${why}`);
  for (const [name, msg] of Object.entries(run.errors)) out.push(`FAILED ${name}: ${msg}`);
  return out.join("\n");
}

/** True if the code under test (`relay/`, `config/`, `log/`) differs from HEAD: figures then describe uncommitted code. */
async function relayDirty(): Promise<boolean | null> {
  try {
    const out = await new Deno.Command("git", {
      args: ["status", "--porcelain", "--", "relay", "config", "log"],
      cwd: ROOT_DIR,
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return null;
    // New test files do not change what runs; modified or new code files do.
    const lines = new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim() !== "");
    return lines.some((l) => !l.endsWith("_test.ts"));
  } catch {
    return null;
  }
}

async function gitHead(): Promise<string> {
  try {
    const out = await new Deno.Command("git", {
      args: ["rev-parse", "--short", "HEAD"],
      cwd: ROOT_DIR,
      stdout: "piped",
      stderr: "null",
    })
      .output();
    return new TextDecoder().decode(out.stdout).trim() || "unknown";
  } catch {
    return "unknown";
  }
}

/** Runs the selected scenarios; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 2;
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  const resultsDir = `${BENCH_DIR}results/${stamp}${opts.quick ? "-quick" : ""}`;
  await Deno.mkdir(resultsDir, { recursive: true });
  const run = new Run(opts, resultsDir);
  const want = (s: Scenario) => opts.only === null || opts.only.has(s);
  const f = run.fig;
  f.mode = opts.quick ? "quick" : "full";
  f.date = new Date().toISOString();
  f.git = await gitHead();
  f.git_dirty = await relayDirty();
  f.deno = Deno.version.deno;
  f.cores = navigator.hardwareConcurrency;
  f.loadavg_start = loadAverage();
  const t0 = performance.now();
  console.log(`bench: ${f.mode} run; relay logs and profiles in ${resultsDir.replace(ROOT_DIR, "")}`);

  const shared = new Scope();
  let relay: RelayProc | null = null;
  const needShared = want("throughput") || want("latency") || want("edge") || want("handshake") || want("iroh");
  const cpu0 = { relay: NaN };
  try {
    if (needShared) {
      try {
        relay = await run.startRelay(shared, "relay");
        cpu0.relay = cpuSeconds(relay.child.pid);
      } catch (e) {
        run.errors.relay = `relay did not start: ${(e as Error).message}`;
      }
    }
    if (relay) {
      if (want("throughput") || want("latency") || want("edge")) {
        await forwardingScenarios(run, relay, {
          throughput: want("throughput"),
          latency: want("latency"),
          edge: want("edge"),
        }).catch((e) => run.errors.forwarding = (e as Error).message);
      }
      if (want("handshake")) {
        console.log("bench: handshake storm…");
        await guarded(
          run,
          "handshake",
          run.plan.scenarioTimeoutMs.handshake,
          (scope) => handshakeScenario(run, relay!, scope),
        );
      }
      if (want("iroh")) {
        console.log("bench: iroh bulk transfer…");
        await guarded(run, "iroh", run.plan.scenarioTimeoutMs.iroh, async () => {
          const r = await runIrohBulk({
            relayPort: relay!.port,
            relayPid: relay!.child.pid,
            mib: run.plan.irohMiB,
            resultsDir,
            timeoutMs: run.plan.scenarioTimeoutMs.iroh - 5000,
          });
          if (r.skipped) {
            run.skipped.iroh = r.skipped;
            f.iroh_status = `skipped: ${r.skipped}`;
            f.iroh_bulk_mib_s = null;
            return;
          }
          f.iroh_status = "ok";
          f.iroh_bulk_mib_s = round(r.mibPerS!, 1);
          f.iroh_bulk_mib = r.mib!;
          f.iroh_bulk_s = round(r.seconds!, 2);
          f.iroh_relay_cpu_pct = Math.round(r.relayCpuPct!);
        });
        if (run.errors.iroh) {
          f.iroh_status = `failed: ${run.errors.iroh}`;
          f.iroh_bulk_mib_s ??= null;
        }
      }
      f.relay_cpu_s_total = round(cpuSeconds(relay.child.pid) - cpu0.relay, 1);
      f.relay_rss_mib_end = round(rssKiB(relay.child.pid) / 1024, 1);
      relay.inspector?.close();
    }
    await shared.close();
    if (want("mesh")) {
      console.log("bench: instance mesh latency (redis, kv)…");
      await guarded(run, "mesh", run.plan.scenarioTimeoutMs.mesh, (scope) => meshScenario(run, scope));
    }
    if (want("discovery")) {
      console.log("bench: discovery (pkarr PUTs, DNS queries vs UDP echo)…");
      await guarded(run, "discovery", run.plan.scenarioTimeoutMs.discovery, async () => {
        Object.assign(f, await runDiscoveryBench(opts.quick));
      });
    }
    if (want("capacity")) {
      console.log("bench: capacity…");
      await guarded(run, "capacity", run.plan.scenarioTimeoutMs.capacity, (scope) => capacityScenario(run, scope));
    }
    if (want("busy")) {
      console.log("bench: busy clients…");
      await guarded(run, "busy", run.plan.scenarioTimeoutMs.busy, (scope) => busyScenario(run, scope));
    }
  } finally {
    await shared.close();
  }
  f.seconds_total = round((performance.now() - t0) / 1000, 1);
  f.loadavg_end = loadAverage();
  if (Object.keys(run.skipped).length) f.skipped = { ...run.skipped };
  if (Object.keys(run.errors).length) f.errors = { ...run.errors };
  // The issue's headline keys are always present, null when not measured.
  for (
    const k of [
      "ws_ratio",
      "ws_ratio_min",
      "derp_ratio",
      "derp_ratio_min",
      "edge_ratio",
      "edge_ratio_min",
      "p99_ratio_ws",
      "p99_ratio_derp",
      "clients",
      "kib_per_client",
      "kib_per_busy_client",
      "handshakes_per_s",
      "handshake_cpu_us",
      "iroh_bulk_mib_s",
      "mesh_redis_p50_ms",
      "mesh_redis_p99_ms",
      "mesh_kv_p50_ms",
      "mesh_kv_p99_ms",
      "dns_qps",
      "dns_ratio",
      "pkarr_puts_per_s",
    ]
  ) {
    if (f[k] === undefined || (typeof f[k] === "number" && !Number.isFinite(f[k]))) f[k] = null;
  }
  console.log("");
  console.log(table(run));
  const json = JSON.stringify(f, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v));
  await Deno.writeTextFile(`${resultsDir}/result.json`, json + "\n");
  await Deno.writeTextFile(`${BENCH_DIR}results/history.jsonl`, json + "\n", { append: true });
  console.log("");
  console.log(json);
  return Object.keys(run.errors).length ? 1 : 0;
}

if (import.meta.main) {
  const stop = () => {
    console.error("bench: interrupted");
    for (const c of ALL_CHILDREN) c.kill();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.exit(await main(Deno.args));
}
