/**
 * @module
 * The `busy` scenario (issue 14): relay memory per client when every client
 * is active. A fresh relay gets `clients` authenticated clients (half 0.35,
 * half 1.x), each sending one datagram per second to its partner (client
 * index xor 1, so half the flows cross generations), spread evenly over the
 * second. After the traffic has run for a while, `kib_per_busy_client` =
 * (RSS now − RSS before connecting) / clients. Target ≤ 32 KiB at 5,000
 * clients; the quick run uses fewer clients and prints "n/a".
 */

import { fmt, metric, num, pad, round, type RunContext, type Scope, scrape, verdict } from "./_harness.ts";
import { rssKiB } from "./_proc.ts";
import type { BusySpec } from "./loadgen.ts";

/** Target (issue 14). */
export const BUSY_TARGET_KIB = 32;
/** Clients the target is stated for. */
export const BUSY_TARGET_CLIENTS = 5000;

const BUSY_PLANS = {
  full: { clients: 5000, trafficMs: 4000, payload: 1200, concurrency: 128 },
  quick: { clients: 1000, trafficMs: 1500, payload: 1200, concurrency: 128 },
};

/** Runs the scenario in `scope` (which owns the relay and the load generator). */
export async function busyScenario(run: RunContext, scope: Scope): Promise<void> {
  const plan = run.opts.quick ? BUSY_PLANS.quick : BUSY_PLANS.full;
  const f = run.fig;
  const relay = await run.startRelay(scope, "relay-busy");
  const pid = relay.child.pid;
  // Warm the handshake and forwarding paths so "before" already holds that memory.
  const warm = scope.deno("busy-warmup", "loadgen.ts", ["-A"], [
    JSON.stringify({ mode: "busy", port: relay.port, count: 64, concurrency: 32, first: 0, payload: plan.payload }),
  ], { stdin: true });
  await warm.waitEvent("traffic", 20_000);
  await new Promise((r) => setTimeout(r, 500));
  await warm.send("exit");
  await warm.waitEvent("done", 10_000);
  await warm.stop();
  await new Promise((r) => setTimeout(r, 1000));
  const before = rssKiB(pid);
  const spec: BusySpec = {
    mode: "busy",
    port: relay.port,
    count: plan.clients,
    concurrency: plan.concurrency,
    first: 0,
    payload: plan.payload,
  };
  const gen = scope.deno("busy-gen", "loadgen.ts", ["-A"], [JSON.stringify(spec)], { stdin: true });
  const connected = await gen.waitEvent("connected", 60_000);
  f.busy_clients = num(connected.ok);
  f.busy_failed = num(connected.failed);
  f.busy_connect_s = round(num(connected.seconds), 2);
  await gen.waitEvent("traffic", 10_000);
  await run.profiled(relay, "busy", () => new Promise((r) => setTimeout(r, plan.trafficMs)));
  const after = rssKiB(pid);
  f.busy_relay_clients_gauge = metric(await scrape(relay.metricsPort), "relayserver_clients");
  await gen.send("exit");
  const done = await gen.waitEvent("done", 20_000);
  f.busy_sent = num(done.sent);
  f.busy_received = num(done.received);
  f.busy_rss_before_mib = round(before / 1024, 1);
  f.busy_rss_after_mib = round(after / 1024, 1);
  const clients = num(f.busy_clients);
  f.kib_per_busy_client = clients > 0 ? round((after - before) / clients, 2) : null;
  if (clients === 0) throw new Error("no client connected");
  if (num(done.received) < 0.99 * num(done.sent)) {
    throw new Error(`busy clients: ${done.received} of ${done.sent} datagrams delivered`);
  }
}

/** The busy part of the report. */
export function busyTable(run: RunContext): string[] {
  const f = run.fig;
  if (f.busy_clients === undefined) return [];
  const atScale = num(f.busy_clients) >= 0.9 * BUSY_TARGET_CLIENTS;
  const k = f.kib_per_busy_client;
  const v = atScale ? verdict(k, (x) => x <= BUSY_TARGET_KIB) : `n/a at ${fmt(f.busy_clients)} clients`;
  return [
    `4b. Busy clients: each sends one datagram per second to its partner, half 0.35 / half 1.x`,
    `   ${fmt(f.busy_clients)} clients (${fmt(f.busy_failed)} failed, connected in ${fmt(f.busy_connect_s, 1)} s), ` +
    `${fmt(f.busy_received)}/${fmt(f.busy_sent)} datagrams delivered; relay RSS ${fmt(f.busy_rss_before_mib, 1)} → ` +
    `${fmt(f.busy_rss_after_mib, 1)} MiB: ${pad(fmt(k, 2), 1)} KiB per busy client ` +
    `(target ≤ ${BUSY_TARGET_KIB} at ${BUSY_TARGET_CLIENTS.toLocaleString("en-US")}: ${v})`,
    "",
  ];
}
