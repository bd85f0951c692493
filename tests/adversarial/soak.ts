/**
 * `deno task soak [--minutes N] [--only word,word]` (default 10 minutes,
 * every attack; not in CI): the real service
 * under legitimate traffic while every attack of `attacks.ts` runs in
 * rotation.
 *
 * - Legitimate relay traffic: two spec-written 0.35 derp clients on
 *   127.0.0.1 exchanging a datagram each way every 50 ms; each must arrive
 *   within 2 s.
 * - Legitimate IMAP: login + GETMETADATA + LOGOUT every 500 ms from
 *   127.0.0.1, each within 3 s; `/ping` every 500 ms within 1 s.
 * - Attacks from 127.0.0.2+, one at a time, each bounded (`ATTACK_MS`),
 *   then a settle period: RSS must come back within 20% of its starting
 *   point (measured after a warm-up with legitimate traffic only) within
 *   `SETTLE_MS`.
 * - The mesh runs against a Redis stand-in that behaves except during its
 *   slot, when it drops every connection.
 * - Not in the rotation, because they need another configuration of the one
 *   service the soak runs (covered by the `*_test.ts` files): password
 *   guessing (`login = "users"`), proxy-mode pipelining, the `access.http`
 *   attacks, the Redis huge reply.
 *
 * Prints an RSS table (every 10 s), one line per attack, a summary and one
 * JSON line; exits 1 if any legitimate request failed, RSS did not settle
 * within 20% of the start after an attack, or (with more than one round)
 * a later round settled more than 20% above round 1's highest (a leak, as
 * opposed to the allocator keeping its high-water mark).
 */

import {
  announcedLengthFlood,
  derpPingFlood,
  idleConnections,
  imapListStars,
  replayClientInfo,
  slowLongLine,
  slowloris,
  smuggle,
  SMUGGLING,
  tlsStall,
  wsPingFlood,
} from "./attacks.ts";
import { FlakyRedis } from "./support/fakes.ts";
import { LegitDerpClient } from "./support/legit.ts";
import { imapLogin, pingMs, pollUntil, Service, serviceToml, sleepUnless } from "./support/service.ts";

const args = Deno.args;
const minutesArg = args.indexOf("--minutes");
const MINUTES = minutesArg >= 0 ? Number(args[minutesArg + 1]) : 10;
if (!(MINUTES > 0)) throw new Error("--minutes needs a positive number");
const onlyArg = args.indexOf("--only");
/** `--only word,word`: run only the attacks whose names contain one of the words. */
const ONLY = onlyArg >= 0 ? args[onlyArg + 1]!.toLowerCase().split(",") : null;
const TOTAL_MS = MINUTES * 60_000;
/** Longest an attack runs, ms. */
const ATTACK_MS = Math.min(30_000, Math.max(8_000, TOTAL_MS / 24));
/**
 * Longest we wait for RSS to settle after an attack, ms: V8's memory reducer
 * shrinks the heap about 30 s after a burst, and the service then gives the
 * freed memory back within its 10 s trim period (cli/malloc_trim.ts).
 */
const SETTLE_MS = 60_000;
/** RSS must come back within this fraction of the start. */
const SETTLE_FRACTION = 0.2;

const redis = new FlakyRedis();
const svc = await Service.start(serviceToml({
  imap: true,
  imapLimits: "max_line_bytes = 65536",
  tail: `[mesh]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:${redis.port}"\n`,
}));
const relay = svc.ports.relay!;
const imap = svc.ports.imap!;
const t0 = performance.now();
const stopLegit = new AbortController();
const legit = { relayOk: 0, relayFail: 0, imapOk: 0, imapFail: 0, pingOk: 0, pingFail: 0, failures: [] as string[] };
const fail = (what: string, e: unknown) => {
  if (legit.failures.length < 50) {
    legit.failures.push(`${((performance.now() - t0) / 1000).toFixed(1)}s ${what}: ${(e as Error).message}`);
  }
};

// Legitimate relay pair.
const a = await LegitDerpClient.connect(relay);
const b = await LegitDerpClient.connect(relay);
// Registration is silent in 0.35: wait until a first datagram gets through.
let seq = 0n;
const registered = await pollUntil(
  () => a.roundTrip(b, seq++, 64, 300).then(() => true, () => false),
  10_000,
);
if (!registered) throw new Error("legitimate clients could not exchange a first datagram");
const relayLoop = (async () => {
  while (!stopLegit.signal.aborted) {
    for (const [from, to] of [[a, b], [b, a]] as const) {
      try {
        await from.roundTrip(to, seq++, 1200, 2000);
        legit.relayOk++;
      } catch (e) {
        legit.relayFail++;
        fail("relay datagram", e);
      }
    }
    await sleepUnless(50, stopLegit.signal);
  }
})();
const imapLoop = (async () => {
  while (!stopLegit.signal.aborted) {
    try {
      const r = await imapLogin(imap, 3000);
      if (!/^L1 OK/.test(r.reply)) throw new Error(r.reply);
      legit.imapOk++;
    } catch (e) {
      legit.imapFail++;
      fail("imap login", e);
    }
    await sleepUnless(500, stopLegit.signal);
  }
})();
const pingLoop = (async () => {
  while (!stopLegit.signal.aborted) {
    try {
      await pingMs(relay, 1000);
      legit.pingOk++;
    } catch (e) {
      legit.pingFail++;
      fail("/ping", e);
    }
    await sleepUnless(500, stopLegit.signal);
  }
})();

// RSS table, every 10 s.
let phase = "warm-up";
const table: { s: number; phase: string; rssMiB: number; fds: number }[] = [];
const sampler = setInterval(() => {
  if (svc.exited) return;
  const row = {
    s: Math.round((performance.now() - t0) / 1000),
    phase,
    rssMiB: Math.round(svc.rssMiB()),
    fds: svc.fds(),
  };
  table.push(row);
  console.log(
    `${String(row.s).padStart(5)} s  ${row.phase.padEnd(28)} RSS ${String(row.rssMiB).padStart(5)} MiB  fds ${row.fds}`,
  );
}, 10_000);

await sleepUnless(10_000);
const startMiB = svc.rssMiB();
console.log(`start RSS after warm-up: ${startMiB.toFixed(1)} MiB; attacks run ${ATTACK_MS / 1000} s each`);

/** One attack of the rotation: a name and a bounded run. */
type Attack = [string, (signal: AbortSignal) => Promise<unknown>];
const attacks: Attack[] = [
  ["ws ping flood (1.x)", (signal) => wsPingFlood(relay, "v1x", { durationMs: ATTACK_MS, signal })],
  ["ws ping flood (0.35 ws)", (signal) => wsPingFlood(relay, "ws035", { durationMs: ATTACK_MS, signal })],
  ["derp Ping flood", (signal) => derpPingFlood(relay, { durationMs: ATTACK_MS, signal })],
  [
    "1 MiB derp headers ×2000",
    (signal) =>
      announcedLengthFlood(relay, "derp", {
        connections: 2000,
        sources: 40,
        durationMs: ATTACK_MS,
        holdMs: 2000,
        signal,
      }),
  ],
  [
    "1 MiB ws64 headers ×2000",
    (signal) =>
      announcedLengthFlood(relay, "ws64", {
        connections: 2000,
        sources: 40,
        durationMs: ATTACK_MS,
        holdMs: 2000,
        signal,
      }),
  ],
  ["IMAP LIST 85 stars", (signal) => imapListStars(imap, { durationMs: ATTACK_MS, signal })],
  [
    "1000 idle IMAP conns",
    (signal) =>
      idleConnections(imap, {
        n: 1000,
        durationMs: ATTACK_MS,
        signal,
        onHeld: () => sleepUnless(ATTACK_MS / 2, signal),
      }),
  ],
  [
    "metrics slowloris ×500",
    (signal) => slowloris(svc.ports.metrics!, { n: 500, durationMs: ATTACK_MS, signal, stopWhenAllClosed: true }),
  ],
  ["request smuggling", async () => {
    for (const r of Object.values(SMUGGLING)) await smuggle(relay, r);
  }],
  ["IMAPS handshake stalls ×400", (signal) =>
    Promise.all([
      tlsStall(svc.ports.imaps!, "silent", {
        sources: 8,
        n: 200,
        durationMs: ATTACK_MS,
        signal,
        onHeld: () => sleepUnless(ATTACK_MS / 2, signal),
      }),
      tlsStall(svc.ports.imaps!, "hello", {
        sources: 8,
        sourceOffset: 8,
        n: 200,
        durationMs: ATTACK_MS,
        signal,
        onHeld: () => sleepUnless(ATTACK_MS / 2, signal),
      }),
    ])],
  ["replayed ClientInfo ×600", (signal) => replayClientInfo(relay, { n: 600, durationMs: ATTACK_MS, signal })],
  [
    "60 KB IMAP lines trickled",
    (signal) =>
      Promise.all(
        Array.from({ length: 20 }, () =>
          slowLongLine(imap, { prefix: 59_000, trickle: 1000, everyMs: 1, durationMs: ATTACK_MS, signal })),
      ),
  ],
  ["Redis drops every connection", async (signal) => {
    redis.misbehave("drop");
    await sleepUnless(ATTACK_MS / 2, signal);
    redis.behave();
  }],
];

const rotation = ONLY ? attacks.filter(([name]) => ONLY.some((w) => name.toLowerCase().includes(w))) : attacks;
if (rotation.length === 0) throw new Error(`--only ${ONLY}: no attack matches`);

const results: {
  attack: string;
  round: number;
  ms: number;
  peakMiB: number;
  settledMiB: number;
  settleMs: number;
  settled: boolean;
}[] = [];
let round = 0;
outer:
while (performance.now() - t0 < TOTAL_MS) {
  round++;
  for (const [name, run] of rotation) {
    if (performance.now() - t0 > TOTAL_MS - ATTACK_MS / 2) break outer;
    phase = name;
    const abort = new AbortController();
    let peak = svc.rssMiB();
    const watch = setInterval(() => {
      peak = Math.max(peak, svc.rssMiB());
      // Never let a runaway eat the machine: 4× the start is a failure anyway.
      if (peak > startMiB * 4 + 400) abort.abort();
    }, 200);
    const ta = performance.now();
    const hardStop = setTimeout(() => abort.abort(), ATTACK_MS + 15_000);
    try {
      await run(abort.signal);
    } catch (e) {
      console.log(`  ${name}: attack error ${(e as Error).message}`);
    }
    clearTimeout(hardStop);
    const ms = Math.round(performance.now() - ta);
    phase = `settle after ${name}`;
    const ts = performance.now();
    // The peak keeps being tracked while settling: queued work can outlive the attacker.
    const settled = await pollUntil(() => svc.rssMiB() <= startMiB * (1 + SETTLE_FRACTION), SETTLE_MS);
    clearInterval(watch);
    const r = {
      attack: name,
      round,
      ms,
      peakMiB: Math.round(peak),
      settledMiB: Math.round(svc.rssMiB()),
      settleMs: Math.round(performance.now() - ts),
      settled,
    };
    results.push(r);
    console.log(
      `  ${name.padEnd(30)} ${String(ms).padStart(6)} ms  peak ${r.peakMiB} MiB  ` +
        `${settled ? "settled" : "NOT settled"} at ${r.settledMiB} MiB in ${r.settleMs} ms`,
    );
  }
}

stopLegit.abort();
await Promise.all([relayLoop, imapLoop, pingLoop]);
clearInterval(sampler);
a.close();
b.close();
const exitMs = await svc.stop();
redis.close();

const unsettled = results.filter((r) => !r.settled);
// Allocator high-water marks are not leaks: V8 and malloc keep memory they
// once used. Drift compares each later round's settled RSS with the highest
// settled RSS of round 1; a leak keeps growing round after round.
const round1 = results.filter((r) => r.round === 1).map((r) => r.settledMiB);
const plateauMiB = round1.length ? Math.max(...round1) : Math.round(startMiB);
const drifting = results.filter((r) => r.round > 1 && r.settledMiB > plateauMiB * 1.2);
const ok = legit.relayFail === 0 && legit.imapFail === 0 && legit.pingFail === 0 && unsettled.length === 0 &&
  drifting.length === 0;
console.log("\nsummary");
console.log(
  `  duration ${((performance.now() - t0) / 60_000).toFixed(1)} min, ${round} round(s), ${results.length} attacks`,
);
console.log(`  start RSS ${startMiB.toFixed(0)} MiB; peak ${Math.max(...results.map((r) => r.peakMiB))} MiB`);
console.log(
  `  settled within ${SETTLE_FRACTION * 100}%: ${results.length - unsettled.length}/${results.length}` +
    (unsettled.length ? ` (not: ${unsettled.map((r) => r.attack).join(", ")})` : ""),
);
console.log(
  `  drift: round-1 plateau ${plateauMiB} MiB; later rounds settled >20% above it: ${drifting.length}` +
    (round > 1 ? "" : " (one round only: run longer to see drift)"),
);
console.log(
  `  legitimate: relay ${legit.relayOk} ok / ${legit.relayFail} failed; IMAP ${legit.imapOk} ok / ` +
    `${legit.imapFail} failed; /ping ${legit.pingOk} ok / ${legit.pingFail} failed`,
);
for (const f of legit.failures.slice(0, 10)) console.log(`    ${f}`);
console.log(`  SIGTERM exit ${Math.round(exitMs)} ms; verdict ${ok ? "PASS" : "FAIL"}`);
console.log(JSON.stringify({
  soak: {
    minutes: MINUTES,
    attackMs: ATTACK_MS,
    startMiB: Math.round(startMiB),
    plateauMiB,
    drifting: drifting.length,
    ok,
  },
  legit: { ...legit, failures: legit.failures.length },
  attacks: results,
  rss: table,
}));
Deno.exit(ok ? 0 : 1);
