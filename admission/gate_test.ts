import assert from "node:assert/strict";
import { AdmissionGate, type AdmissionLimits, RESERVE_SOURCE_MAX, Ticket } from "./gate.ts";

const LIMITS: AdmissionLimits = { maxConnections: 100, reserve: 10, maxPerSource: 8, perSecond: 2, burst: 4 };

function admitN(gate: AdmissionGate, addr: string, n: number, now: number): (Ticket | string)[] {
  return Array.from({ length: n }, () => gate.admit(addr, now));
}

Deno.test("AdmissionGate.admit() refuses a source over its concurrent limit, and admits again after a release", () => {
  const gate = new AdmissionGate({ ...LIMITS, perSecond: 0 });
  const got = admitN(gate, "192.0.2.1", 9, 0);
  assert.ok(got.slice(0, 8).every((t) => t instanceof Ticket));
  assert.equal(got[8], "source_connections");
  // Another source is unaffected.
  assert.ok(gate.admit("192.0.2.2", 0) instanceof Ticket);
  (got[0] as Ticket).release();
  (got[0] as Ticket).release(); // idempotent: frees one slot, not two
  assert.ok(gate.admit("192.0.2.1", 0) instanceof Ticket);
  assert.equal(gate.admit("192.0.2.1", 0), "source_connections");
  assert.equal(gate.open, 9);
});

Deno.test("AdmissionGate.admit() rate-limits new connections per source with a token bucket", () => {
  const gate = new AdmissionGate({ ...LIMITS, maxPerSource: 1000 });
  const burst = admitN(gate, "192.0.2.1", 5, 1000);
  assert.deepEqual(burst.map((t) => typeof t), ["object", "object", "object", "object", "string"]);
  assert.equal(burst[4], "source_rate");
  // Refusals take no tokens: 499 ms later there is still less than one token (2/s).
  assert.equal(gate.admit("192.0.2.1", 1499), "source_rate");
  assert.ok(gate.admit("192.0.2.1", 1500) instanceof Ticket);
  assert.equal(gate.admit("192.0.2.1", 1500), "source_rate");
  // Releasing every connection keeps the rate history (the source goes idle, not away).
  for (const t of burst) if (t instanceof Ticket) t.release();
  assert.equal(gate.admit("192.0.2.1", 1600), "source_rate");
  assert.ok(gate.admit("192.0.2.9", 1600) instanceof Ticket);
});

Deno.test("AdmissionGate.admit() counts an IPv6 /64 as one source and mapped IPv4 as IPv4", () => {
  const gate = new AdmissionGate({ ...LIMITS, maxPerSource: 2, perSecond: 0 });
  assert.ok(gate.admit("2001:db8:1:2::1", 0) instanceof Ticket);
  assert.ok(gate.admit("2001:db8:1:2:ffff::9", 0) instanceof Ticket);
  assert.equal(gate.admit("2001:db8:1:2::77", 0), "source_connections");
  assert.ok(gate.admit("2001:db8:1:3::1", 0) instanceof Ticket);
  assert.ok(gate.admit("192.0.2.5", 0) instanceof Ticket);
  assert.ok(gate.admit("::ffff:192.0.2.5", 0) instanceof Ticket);
  assert.equal(gate.admit("192.0.2.5", 0), "source_connections");
});

Deno.test("AdmissionGate.admit() keeps the reserve for sources with few connections", () => {
  const gate = new AdmissionGate({ maxConnections: 20, reserve: 5, maxPerSource: 100, perSecond: 0, burst: 1 });
  // One flooding source takes everything up to the reserve...
  const flood = admitN(gate, "198.51.100.1", 20, 0);
  assert.equal(flood.filter((t) => t instanceof Ticket).length, 15);
  assert.equal(flood[15], "global");
  // ...while fresh sources still get in, up to RESERVE_SOURCE_MAX each, until the hard cap.
  const a = admitN(gate, "192.0.2.1", RESERVE_SOURCE_MAX + 1, 0);
  assert.equal(a.filter((t) => t instanceof Ticket).length, RESERVE_SOURCE_MAX);
  assert.equal(a[RESERVE_SOURCE_MAX], "global");
  assert.ok(gate.admit("192.0.2.2", 0) instanceof Ticket);
  assert.equal(gate.open, 20);
  assert.equal(gate.admit("192.0.2.3", 0), "global");
  (flood[0] as Ticket).release();
  assert.ok(gate.admit("192.0.2.3", 0) instanceof Ticket);
});

Deno.test("AdmissionGate keeps bounded state however many sources connect", () => {
  const gate = new AdmissionGate({ ...LIMITS, maxConnections: 1_000_000, maxIdleSources: 1000 });
  for (let i = 0; i < 50_000; i++) {
    const t = gate.admit(`2001:db8:${(i >> 16) & 0xffff}:${i & 0xffff}::1`, 0);
    assert.ok(t instanceof Ticket);
    t.release();
  }
  assert.ok(gate.trackedSources <= 1000, `tracked ${gate.trackedSources}`);
  // Refilled buckets are forgotten as time passes.
  for (let i = 0; i < 1000; i++) gate.admit("192.0.2.1", 10_000 + i);
  assert.ok(gate.trackedSources < 1000, `tracked ${gate.trackedSources}`);
});

Deno.test("AdmissionGate with perSecond 0 keeps no idle sources", () => {
  const gate = new AdmissionGate({ ...LIMITS, perSecond: 0 });
  const t = gate.admit("192.0.2.1", 0) as Ticket;
  t.release();
  assert.equal(gate.trackedSources, 0);
  assert.equal(gate.open, 0);
});
