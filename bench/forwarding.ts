/**
 * @module
 * Forwarding scenarios (issue 14): throughput per traffic shape and one-way
 * latency, each path against its limit baseline measured in the same run.
 *
 * | path   | server under test                         | baseline (the limit)                                  |
 * | ------ | ----------------------------------------- | ----------------------------------------------------- |
 * | `ws`   | relay raw listener, 1.x `iroh-relay-v2`   | `baseline_ws_raw.ts`: raw-TCP WebSocket forwarder     |
 * | `derp` | relay raw listener, 0.35 derp frames      | `baseline_tcp.ts`: 5-byte-framed TCP byte pipe        |
 * | `edge` | `deploy/edge.ts`'s core + `createFetchHandler` (`edge_server.ts`) | `baseline_ws.ts`: `Deno.serve` + `upgradeWebSocket` |
 *
 * Shapes ({@link Shape}): `batched` (up to 64 datagrams of 1,200 bytes per
 * write), `unbatched` (one datagram per write, 60–1,400 bytes, seeded),
 * `fanin` (unbatched from N senders to one receiver). Figures per path P,
 * side S (`relay`/`base`), shape H and count N: `P_S_dgram_s_H_N`,
 * `P_S_mib_s_H_N`, `P_S_cpu_us_per_dgram_H_N`, `P_S_cpu_pct_H_N`,
 * `P_gen_cpu_pct_S_H_N`, `P_ratio_H_N`; `P_ratio` (geometric mean over every
 * shape and N), `P_ratio_min`, `P_ratio_H` (per shape). Figures kept under
 * new names for history: `ws_serve_ratio[_N]` is the old `ws_ratio[_N]`
 * (relay ws vs `Deno.serve`, batched) and `derp_ratio_batched[_N]` the old
 * `derp_ratio[_N]`.
 *
 * Length (~470 lines): the runner and its table share the plan and the key
 * names, so they stay together.
 */

import {
  fmt,
  geomean,
  guarded,
  measured,
  metric,
  num,
  pad,
  type RelayProc,
  round,
  type RunContext,
  Scope,
  scrape,
  verdict,
} from "./_harness.ts";
import { Inspector, inspectorUrl } from "./_profile.ts";
import type { Kind } from "./_wire.ts";
import { type ForwardSpec, type LatencySpec, quantile, type Shape } from "./loadgen.ts";

/** A forwarding path. */
export type Path = "ws" | "derp" | "edge";

/** Targets (issue 14). */
export const FORWARD_TARGETS = { ratio: 0.9, p99Ratio: 1.2 };

/** Run lengths of the forwarding scenarios. */
interface FwdPlan {
  /** Shapes and the sender counts each runs at. */
  shapes: { shape: Shape; counts: number[] }[];
  window: number;
  /** Datagram contents of the batched shape, bytes. */
  payload: number;
  warmupMs: number;
  measureMs: number;
  /** Runs per configuration and side; the best counts (noise only ever slows a run down). */
  rounds: number;
  latPairs: number;
  latRate: number;
  latWarmupMs: number;
  latMeasureMs: number;
  latRounds: number;
}

const FWD_PLANS: Record<"full" | "quick", FwdPlan> = {
  full: {
    shapes: [
      { shape: "batched", counts: [1, 8, 64] },
      { shape: "unbatched", counts: [1, 8, 64] },
      { shape: "fanin", counts: [64] },
    ],
    window: 256,
    payload: 1200,
    warmupMs: 1000,
    measureMs: 2000,
    rounds: 2,
    latPairs: 8,
    latRate: 5000,
    latWarmupMs: 500,
    latMeasureMs: 1500,
    latRounds: 4,
  },
  quick: {
    shapes: [
      { shape: "batched", counts: [1, 64] },
      { shape: "unbatched", counts: [8] },
      { shape: "fanin", counts: [64] },
    ],
    window: 256,
    payload: 1200,
    warmupMs: 300,
    measureMs: 700,
    rounds: 1,
    latPairs: 8,
    latRate: 5000,
    latWarmupMs: 300,
    latMeasureMs: 700,
    latRounds: 2,
  },
};

/** One server a load generator can be pointed at. */
interface Server {
  port: number;
  kind: Kind;
  pid: number;
  /** Relay metrics port (drop counter), if it has one. */
  metricsPort?: number;
  /** For profiling. */
  proc?: RelayProc;
}

/** Which forwarding scenarios to run. */
export interface ForwardingWant {
  throughput: boolean;
  latency: boolean;
  edge: boolean;
}

/** Runs the forwarding scenarios against `relay` (and, for `edge`, a fresh edge server). */
export async function forwardingScenarios(run: RunContext, relay: RelayProc, want: ForwardingWant): Promise<void> {
  const plan = run.opts.quick ? FWD_PLANS.quick : FWD_PLANS.full;
  const configs = plan.shapes.reduce((a, s) => a + s.counts.length, 0);
  const tpTimeout = configs * plan.rounds * 2 * (plan.warmupMs + plan.measureMs + 8000) + 20_000;
  const latTimeout = 3 * plan.latRounds * (plan.latWarmupMs + plan.latMeasureMs + 6000) + 20_000;
  const servers = new Scope();
  try {
    const start = async (name: string, script: string, perms: string[]) => {
      const c = servers.deno(name, script, perms, []);
      return { child: c, port: Number((await c.waitEvent("listening", 20_000)).port) };
    };
    const relayServer = (kind: Kind): Server => ({
      port: relay.port,
      kind,
      pid: relay.child.pid,
      metricsPort: relay.metricsPort,
      proc: relay,
    });
    if (want.throughput || want.latency) {
      const raw = await start("baseline-ws-raw", "baseline_ws_raw.ts", ["--allow-net"]);
      const tcp = await start("baseline-tcp", "baseline_tcp.ts", ["--allow-net"]);
      const serve = await start("baseline-ws-serve", "baseline_ws.ts", ["--allow-net"]);
      const base = {
        ws: { port: raw.port, kind: "base-ws", pid: raw.child.pid } as Server,
        derp: { port: tcp.port, kind: "base-tcp", pid: tcp.child.pid } as Server,
        serve: { port: serve.port, kind: "base-ws", pid: serve.child.pid } as Server,
      };
      for (const path of ["ws", "derp"] as const) {
        console.log(`bench: ${path} path: throughput and latency vs baseline…`);
        const rel = relayServer(path === "ws" ? "v2" : "derp");
        if (want.throughput) {
          await guarded(
            run,
            `throughput-${path}`,
            tpTimeout,
            (scope) => throughput(run, plan, scope, path, rel, base[path]),
          );
          // The old figure (relay ws vs Deno.serve, batched) needs the serve baseline's batched runs.
          if (path === "ws") {
            await guarded(run, "throughput-ws-serve", tpTimeout, (scope) => serveBatched(run, plan, scope, base.serve));
          }
        }
        if (want.latency) {
          const sides: [string, Server][] = [["relay", rel], ["base", base[path]]];
          if (path === "ws") sides.push(["serve", base.serve]);
          await guarded(run, `latency-${path}`, latTimeout, (scope) => latency(run, plan, scope, path, sides));
        }
      }
    }
    if (want.edge) {
      console.log("bench: edge path (deploy/edge.ts under Deno.serve): throughput vs Deno.serve baseline…");
      await guarded(run, "throughput-edge", tpTimeout + 30_000, async (scope) => {
        const serve = await start("baseline-ws-serve-edge", "baseline_ws.ts", ["--allow-net"]);
        const edge = await startEdge(run, scope);
        await throughput(run, plan, scope, "edge", edge, { port: serve.port, kind: "base-ws", pid: serve.child.pid });
        edge.proc?.inspector?.close();
      });
    }
    derivedFigures(run, plan);
  } finally {
    await servers.close();
  }
}

/** Starts `edge_server.ts` (with the inspector when profiling). */
async function startEdge(run: RunContext, scope: Scope): Promise<Server> {
  const perms = ["--allow-net", "--allow-env", "--allow-read"];
  if (run.opts.cpuProf) perms.push("--inspect=127.0.0.1:0");
  const child = scope.deno("relay-edge", "edge_server.ts", perms, [], {
    stderrFile: `${run.resultsDir}/relay-edge.log`,
  });
  const port = Number((await child.waitEvent("listening", 30_000)).port);
  let inspector: Inspector | null = null;
  if (run.opts.cpuProf) {
    let url = inspectorUrl(child.stderrTail);
    for (let i = 0; i < 50 && url === null; i++) {
      await new Promise((r) => setTimeout(r, 100));
      url = inspectorUrl(child.stderrTail);
    }
    if (url !== null) inspector = await Inspector.connect(url);
  }
  return { port, kind: "v2", pid: child.pid, proc: { child, port, metricsPort: NaN, inspector } };
}

/** Relay drop counter, or NaN without metrics. */
async function dropped(s: Server): Promise<number> {
  if (s.metricsPort === undefined || !Number.isFinite(s.metricsPort)) return NaN;
  return metric(await scrape(s.metricsPort), "relayserver_send_packets_dropped_total");
}

/** Throughput of `path` over every shape and count, relay and baseline alternating. */
async function throughput(
  run: RunContext,
  plan: FwdPlan,
  scope: Scope,
  path: Path,
  relay: Server,
  base: Server,
): Promise<void> {
  const f = run.fig;
  for (const { shape, counts } of plan.shapes) {
    for (const n of counts) {
      const best: Record<"relay" | "base", Awaited<ReturnType<typeof measured>> | null> = { relay: null, base: null };
      let drops = 0;
      for (let r = 0; r < plan.rounds; r++) {
        // Alternate which side goes first, so drift in background load hits both alike.
        const order: ("relay" | "base")[] = r % 2 === 0 ? ["base", "relay"] : ["relay", "base"];
        for (const side of order) {
          const s = side === "relay" ? relay : base;
          const spec: ForwardSpec = {
            mode: "forward",
            port: s.port,
            kind: s.kind,
            pairs: n,
            window: plan.window,
            payload: plan.payload,
            warmupMs: plan.warmupMs,
            measureMs: plan.measureMs,
            shape,
          };
          const before = side === "relay" ? await dropped(s) : 0;
          const name = `loadgen-${path}-${side}-${shape}-${n}`;
          const go = () => measured(scope, name, spec, s.pid, 30_000 + plan.warmupMs + plan.measureMs);
          const profile = side === "relay" && r === 0 && s.proc !== undefined && n === counts[counts.length - 1];
          const m = profile ? await run.profiled(s.proc!, `throughput-${path}-${shape}-${n}`, go) : await go();
          if (side === "relay") drops += (await dropped(s)) - before;
          if (!best[side] || num(m.res.dgram_s) > num(best[side]!.res.dgram_s)) best[side] = m;
        }
      }
      const k = `${shape}_${n}`;
      for (const side of ["relay", "base"] as const) {
        const m = best[side]!;
        f[`${path}_${side}_dgram_s_${k}`] = Math.round(num(m.res.dgram_s));
        f[`${path}_${side}_mib_s_${k}`] = round(num(m.res.mib_s), 1);
        f[`${path}_${side}_cpu_us_per_dgram_${k}`] = round((m.serverCpu * 1e6) / (num(m.res.dgram_s) * m.wall), 2);
        f[`${path}_${side}_cpu_pct_${k}`] = Math.round((100 * m.serverCpu) / m.wall);
        f[`${path}_gen_cpu_pct_${side}_${k}`] = Math.round((100 * m.genCpu) / m.wall);
        // A window given up after a 1 s stall (CPU starvation or a real loss), and datagrams never received.
        f[`${path}_${side}_lost_${k}`] = num(m.res.lost);
        f[`${path}_${side}_missing_${k}`] = num(m.res.missing);
        f[`${path}_${side}_max_gap_ms_${k}`] = num(m.res.max_gap_ms);
      }
      f[`${path}_relay_dropped_${k}`] = Number.isFinite(drops) ? drops : null;
      f[`${path}_window_${k}`] = num(best.relay!.res.window);
      f[`${path}_ratio_${k}`] = round(num(best.relay!.res.dgram_s) / num(best.base!.res.dgram_s), 3);
    }
  }
}

/** The `Deno.serve` baseline's batched runs (for the old `ws_ratio`, now `ws_serve_ratio`). */
async function serveBatched(run: RunContext, plan: FwdPlan, scope: Scope, serve: Server): Promise<void> {
  const counts = plan.shapes.find((s) => s.shape === "batched")?.counts ?? [];
  for (const n of counts) {
    let best = NaN;
    for (let r = 0; r < plan.rounds; r++) {
      const spec: ForwardSpec = {
        mode: "forward",
        port: serve.port,
        kind: "base-ws",
        pairs: n,
        window: plan.window,
        payload: plan.payload,
        warmupMs: plan.warmupMs,
        measureMs: plan.measureMs,
        shape: "batched",
      };
      const m = await measured(scope, `loadgen-ws-serve-batched-${n}`, spec, serve.pid, 30_000);
      if (!(num(m.res.dgram_s) <= best)) best = num(m.res.dgram_s);
    }
    run.fig[`ws_serve_dgram_s_batched_${n}`] = Math.round(best);
  }
}

/** One-way latency at a fixed rate, sides alternating in rounds, samples pooled per side. */
async function latency(
  run: RunContext,
  plan: FwdPlan,
  scope: Scope,
  path: Path,
  sides: [string, Server][],
): Promise<void> {
  const pooled = new Map<string, number[]>(sides.map(([l]) => [l, []]));
  const sums = new Map(sides.map(([l]) => [l, { sent: 0, received: 0, cpu: 0, wall: 0 }]));
  for (let r = 0; r < plan.latRounds; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    for (const [label, s] of order) {
      const spec: LatencySpec = {
        mode: "latency",
        port: s.port,
        kind: s.kind,
        pairs: plan.latPairs,
        rate: plan.latRate,
        payload: plan.payload,
        warmupMs: plan.latWarmupMs,
        measureMs: plan.latMeasureMs,
      };
      const m = await measured(scope, `latency-${path}-${label}`, spec, s.pid, 30_000);
      const pool = pooled.get(label)!;
      for (const us of m.res.samples_us as number[]) pool.push(us / 1000);
      const t = sums.get(label)!;
      t.sent += num(m.res.sent);
      t.received += num(m.res.received);
      t.cpu += m.serverCpu;
      t.wall += m.wall;
    }
  }
  const f = run.fig;
  const q = new Map<string, { p50: number; p99: number }>();
  for (const [label] of sides) {
    const sorted = pooled.get(label)!.sort((a, b) => a - b);
    for (const [name, v] of [["p50", 0.5], ["p99", 0.99], ["p999", 0.999]] as const) {
      f[`lat_${path}_${label}_${name}_ms`] = round(quantile(sorted, v), 3);
    }
    q.set(label, { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) });
    const t = sums.get(label)!;
    f[`lat_${path}_${label}_rate`] = Math.round(t.sent / t.wall);
    f[`lat_${path}_${label}_delivered`] = `${t.received}/${t.sent}`;
    f[`lat_${path}_${label}_cpu_pct`] = Math.round((100 * t.cpu) / t.wall);
  }
  const rel = q.get("relay")!;
  for (const [label] of sides.slice(1)) {
    const suffix = label === "base" ? "" : `_${label}`;
    f[`p99_ratio_${path}${suffix}`] = round(rel.p99 / q.get(label)!.p99, 3);
    // p50 is far less exposed to scheduling noise than p99: a steadier view of the added latency.
    f[`p50_ratio_${path}${suffix}`] = round(rel.p50 / q.get(label)!.p50, 3);
  }
}

/** Geometric means and minima over shapes and counts, and the figures kept under new names. */
function derivedFigures(run: RunContext, plan: FwdPlan): void {
  const f = run.fig;
  const val = (k: string) => (typeof f[k] === "number" && Number.isFinite(f[k]) ? f[k] as number : NaN);
  for (const path of ["ws", "derp", "edge"] as const) {
    const all: number[] = [];
    for (const { shape, counts } of plan.shapes) {
      const rs = counts.map((n) => val(`${path}_ratio_${shape}_${n}`)).filter((x) => Number.isFinite(x));
      if (rs.length === 0) continue;
      f[`${path}_ratio_${shape}`] = round(geomean(rs), 3);
      all.push(...rs);
    }
    if (all.length === 0) continue;
    f[`${path}_ratio`] = round(geomean(all), 3);
    f[`${path}_ratio_min`] = round(Math.min(...all), 3);
  }
  const batched = plan.shapes.find((s) => s.shape === "batched")?.counts ?? [];
  const old: number[] = [];
  for (const n of batched) {
    const r = val(`ws_relay_dgram_s_batched_${n}`) / val(`ws_serve_dgram_s_batched_${n}`);
    if (Number.isFinite(r)) {
      f[`ws_serve_ratio_${n}`] = round(r, 3);
      old.push(r);
    }
  }
  if (old.length) f.ws_serve_ratio = round(geomean(old), 3);
}

/** The forwarding part of the report. */
export function forwardingTable(run: RunContext): string[] {
  const f = run.fig;
  const plan = run.opts.quick ? FWD_PLANS.quick : FWD_PLANS.full;
  const out: string[] = [];
  const has = (k: string) => f[k] !== undefined && f[k] !== null;
  const paths = (["ws", "derp", "edge"] as const).filter((p) => has(`${p}_ratio`));
  if (paths.length) {
    out.push(
      `1+2. Forwarding throughput vs the limit baseline: ${plan.measureMs / 1000} s per run, best of ${plan.rounds}; ` +
        `batched = ${plan.payload}-byte datagrams, up to 64 per write; unbatched = one per write, 60–1,400 bytes; ` +
        `fanin = unbatched, N senders to 1 receiver`,
    );
    out.push(
      "path  shape      N  relay dgram/s   MiB/s   base dgram/s   MiB/s   ratio  target    relay µs/dgram  base µs/dgram  relay CPU%  gen CPU%",
    );
    for (const path of paths) {
      for (const { shape, counts } of plan.shapes) {
        for (const n of counts) {
          const k = `${shape}_${n}`;
          const r = f[`${path}_ratio_${k}`];
          out.push(
            [
              pad(path, 4),
              ` ${shape.padEnd(9)}`,
              pad(n, 3),
              pad(fmt(f[`${path}_relay_dgram_s_${k}`]), 14),
              pad(fmt(f[`${path}_relay_mib_s_${k}`], 1), 7),
              pad(fmt(f[`${path}_base_dgram_s_${k}`]), 14),
              pad(fmt(f[`${path}_base_mib_s_${k}`], 1), 7),
              pad(fmt(r, 3), 7),
              pad(`≥${FORWARD_TARGETS.ratio} ${verdict(r, (x) => x >= FORWARD_TARGETS.ratio)}`, 9),
              pad(fmt(f[`${path}_relay_cpu_us_per_dgram_${k}`], 2), 15),
              pad(fmt(f[`${path}_base_cpu_us_per_dgram_${k}`], 2), 14),
              pad(fmt(f[`${path}_relay_cpu_pct_${k}`]), 11),
              pad(fmt(f[`${path}_gen_cpu_pct_relay_${k}`]), 9),
            ].join(" "),
          );
        }
      }
      out.push(
        `      ${path}_ratio (geometric mean) ${fmt(f[`${path}_ratio`], 3)}, min ${fmt(f[`${path}_ratio_min`], 3)}` +
          (path === "ws" && has("ws_serve_ratio")
            ? `; vs Deno.serve (old ws_ratio, batched): ws_serve_ratio ${fmt(f.ws_serve_ratio, 3)}`
            : ""),
      );
    }
    out.push("");
  }
  const lat = (["ws", "derp"] as const).filter((p) => has(`p99_ratio_${p}`));
  if (lat.length) {
    out.push(
      `3. One-way latency at ${plan.latRate.toLocaleString("en-US")} datagrams/s over ${plan.latPairs} pairs, ` +
        `${plan.latRounds} alternating rounds of ${plan.latMeasureMs / 1000} s per side, samples pooled`,
    );
    out.push("path  server      p50 ms   p99 ms  p99.9 ms  delivered     server CPU%");
    for (const path of lat) {
      for (const side of ["relay", "base", "serve"]) {
        if (!has(`lat_${path}_${side}_p99_ms`)) continue;
        out.push(
          [
            pad(path, 4),
            ` ${(side === "base" ? "baseline" : side === "serve" ? "Deno.serve" : side).padEnd(10)}`,
            pad(fmt(f[`lat_${path}_${side}_p50_ms`], 3), 8),
            pad(fmt(f[`lat_${path}_${side}_p99_ms`], 3), 8),
            pad(fmt(f[`lat_${path}_${side}_p999_ms`], 3), 9),
            pad(fmt(f[`lat_${path}_${side}_delivered`]), 13),
            pad(fmt(f[`lat_${path}_${side}_cpu_pct`]), 11),
          ].join(" "),
        );
      }
      const r = f[`p99_ratio_${path}`];
      out.push(
        `      p99_ratio_${path} ${fmt(r, 3)} (target ≤ ${FORWARD_TARGETS.p99Ratio}: ${
          verdict(r, (x) => x <= FORWARD_TARGETS.p99Ratio)
        }), p50_ratio_${path} ${fmt(f[`p50_ratio_${path}`], 3)}`,
      );
    }
    out.push("");
  }
  return out;
}

/** Figure keys this module always reports (null when not measured). */
export const FORWARDING_HEADLINE_KEYS = [
  "ws_ratio",
  "ws_ratio_min",
  "derp_ratio",
  "derp_ratio_min",
  "edge_ratio",
  "edge_ratio_min",
];
