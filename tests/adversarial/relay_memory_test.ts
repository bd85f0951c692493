/**
 * Issue 9, relay memory findings, against the real process: WebSocket ping
 * floods that never read (1.x and 0.35 WebSocket on `/relay`), a relay-level
 * Ping flood (derp), and frame headers announcing 1 MiB on thousands of
 * connections (derp, WebSocket 16- and 64-bit lengths).
 *
 * Bounds and why:
 * - RSS growth under 150 MiB. A capped control queue (64 KiB, CONTRACT) plus
 *   the kernel socket buffers and GC noise of a 2-core loaded machine stay
 *   well under it; the unfixed relay grew by gigabytes in seconds.
 * - `/ping` from 127.0.0.1 answers within 1 s during the attack (the event
 *   loop stayed blocked ~20 s in the finding).
 * - The flooding connection is closed by the server, and counted in
 *   `relayserver_disconnects_by_reason_total{reason="control_queue_full"}`.
 */

import assert from "node:assert/strict";
import { announcedLengthFlood, derpPingFlood, wsPingFlood } from "./attacks.ts";
import { metricValue, pollUntil, Service, serviceToml } from "./support/service.ts";
import { describe, watchAttack } from "./support/watch.ts";

const RSS_CAP_MIB = 150;
const PING_BOUND_MS = 1000;

async function withRelay(fn: (svc: Service) => Promise<void>): Promise<void> {
  const svc = await Service.start(serviceToml());
  try {
    await fn(svc);
  } finally {
    await svc.stop();
  }
}

for (const kind of ["v1x", "ws035"] as const) {
  Deno.test(
    `adversarial: WebSocket ping flood without reading (${kind}): disconnected, RSS +<${RSS_CAP_MIB} MiB, /ping <${PING_BOUND_MS} ms`,
    async () => {
      await withRelay(async (svc) => {
        const w = await watchAttack(
          svc,
          { abortAtMiB: RSS_CAP_MIB, pingPort: svc.ports.relay!, pingBoundMs: PING_BOUND_MS },
          (signal) => wsPingFlood(svc.ports.relay!, kind, { durationMs: 12_000, signal, maxBytes: 2 ** 31 }),
        );
        console.log(describe(w));
        assert.ok(w.growthMiB < RSS_CAP_MIB, `RSS grew by ${w.growthMiB.toFixed(0)} MiB`);
        assert.equal(w.result.closedByServer, 1, "the flooding connection is disconnected");
        assert.deepEqual(w.ping!.failures, [], "/ping answered in time during the flood");
        const m = await svc.metrics();
        assert.ok(
          metricValue(m, "relayserver_disconnects_by_reason_total", { reason: "control_queue_full" }) >= 1,
          "counted as control_queue_full",
        );
      });
    },
  );
}

Deno.test(
  `adversarial: derp Ping frames flood without reading: disconnected, RSS +<${RSS_CAP_MIB} MiB, /ping <${PING_BOUND_MS} ms`,
  async () => {
    await withRelay(async (svc) => {
      const w = await watchAttack(
        svc,
        { abortAtMiB: RSS_CAP_MIB, pingPort: svc.ports.relay!, pingBoundMs: PING_BOUND_MS },
        (signal) => derpPingFlood(svc.ports.relay!, { durationMs: 12_000, signal, maxBytes: 2 ** 30 }),
      );
      console.log(describe(w));
      assert.ok(w.growthMiB < RSS_CAP_MIB, `RSS grew by ${w.growthMiB.toFixed(0)} MiB`);
      assert.equal(w.result.closedByServer, 1, "the flooding connection is disconnected");
      assert.deepEqual(w.ping!.failures, []);
      const m = await svc.metrics();
      assert.ok(metricValue(m, "relayserver_disconnects_by_reason_total") >= 1, "counted by reason");
    });
  },
);

// 2,000 connections over 40 sources (50 each: under the per-source cap of
// 256 and the connect burst of 128, so what protects us here is that
// buffers grow with bytes that arrived). Announcing 1 MiB and sending 16
// bytes, each held connection may cost a few KiB plus a read buffer:
// 2,000 × 64 KiB = 125 MiB is the most a sane reader needs; the unfixed
// relay reserved the full 1 MiB each (2,000 × 1 MiB ≈ 2 GiB). Cap: 200 MiB
// of growth during the third wave. The first two waves are opened and
// closed unwatched, so the allocator's threshold has moved and the third
// wave's buffers come zeroed (resident) from its heap, as in the finding
// (RSS stayed flat for the first wave there too). Bounded at 25 s per wave.
const CONNS = 2000;
// While 2,000 connections arrive in about a second, the accept queue can be
// full for a moment: the kernel then drops our SYN and retries it after 1 s.
// One retry is allowed; the unfixed relay failed on memory, not on this.
const STORM_PING_BOUND_MS = 2500;
const ANNOUNCE_CAP_MIB = 200;
for (const kind of ["derp", "ws64"] as const) {
  Deno.test(
    `adversarial: ${CONNS} connections whose ${kind} frame header announces 1 MiB and sends 16 B: RSS +<${ANNOUNCE_CAP_MIB} MiB, /ping <${STORM_PING_BOUND_MS} ms`,
    async () => {
      await withRelay(async (svc) => {
        const flood = { connections: CONNS, sources: 40, durationMs: 25_000 };
        await announcedLengthFlood(svc.ports.relay!, kind, { ...flood, waves: 2, holdMs: 0 });
        const w = await watchAttack(
          svc,
          {
            abortAtMiB: ANNOUNCE_CAP_MIB,
            pingPort: svc.ports.relay!,
            pingBoundMs: STORM_PING_BOUND_MS,
            probeEveryMs: 500,
          },
          (signal) => announcedLengthFlood(svc.ports.relay!, kind, { ...flood, holdMs: 2000, signal }),
        );
        console.log(describe(w));
        assert.ok(w.growthMiB < ANNOUNCE_CAP_MIB, `RSS grew by ${w.growthMiB.toFixed(0)} MiB`);
        assert.ok(w.result.notes.upgraded as number > CONNS / 2, "the attack got through the upgrade");
        assert.deepEqual(w.ping!.failures, []);
      });
    },
  );
}

// After the flood the memory must come back, not stay at the allocator's
// high-water mark (issue 9's soak criterion: within 20% of the start). The
// V8 heap shrinks about 30 s after the burst; glibc keeps what native code
// freed until the service's periodic malloc_trim (cli/malloc_trim.ts). Before
// it, RSS stayed ~35% above the start indefinitely. Bound: 75 s.
Deno.test(
  `adversarial: after ${CONNS} announced-length connections close, RSS comes back within 20% of its start`,
  async () => {
    await withRelay(async (svc) => {
      await new Promise((r) => setTimeout(r, 1000));
      const startMiB = svc.rssMiB();
      const flood = { connections: CONNS, sources: 40, durationMs: 25_000 };
      await announcedLengthFlood(svc.ports.relay!, "derp", { ...flood, waves: 2, holdMs: 1000 });
      const peakMiB = svc.rssMiB();
      const settled = await pollUntil(() => svc.rssMiB() <= startMiB * 1.2, 75_000);
      console.log(
        `RSS start ${startMiB.toFixed(0)} MiB, after the flood ${peakMiB.toFixed(0)}, now ${svc.rssMiB().toFixed(0)}`,
      );
      assert.ok(settled, `RSS ${svc.rssMiB().toFixed(0)} MiB did not come back within 20% of ${startMiB.toFixed(0)}`);
    });
  },
);

Deno.test("adversarial: a WebSocket 64-bit length of 2^62 is refused at once (frame_too_large)", async () => {
  await withRelay(async (svc) => {
    const r = await announcedLengthFlood(svc.ports.relay!, "ws64huge", {
      connections: 20,
      durationMs: 10_000,
      holdMs: 1000,
    });
    assert.equal(r.notes.upgraded, 20);
    assert.equal(r.closedByServer, 20, "every connection announcing 2^62 bytes is closed by the server");
    const m = await svc.metrics();
    assert.ok(
      metricValue(m, "relayserver_disconnects_by_reason_total", { reason: "frame_too_large" }) >= 20,
      "counted as frame_too_large",
    );
  });
});
