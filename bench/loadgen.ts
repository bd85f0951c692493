/**
 * @module
 * Load generator child process (`deno run bench/loadgen.ts '<json spec>'`).
 * It owns both ends of every flow, so senders and receivers share one clock
 * and one count, and it reports JSON-line events on stdout for `main.ts`:
 * `ready`, `measure-start`, `measure-end`, `result` (or `error`).
 *
 * Modes:
 * - `forward`: N sender→receiver pairs push datagrams as fast as a bounded
 *   window allows: per pair, sent − highest-received-sequence ≤ `window`.
 *   Only delivered datagrams count. A datagram dropped by the server does not
 *   stall the pair (later ones advance the window); if the whole window is
 *   lost, the pair gives it up after {@link STALL_MS} and counts it as lost.
 * - `latency`: datagrams at a fixed total rate, each its own write, carrying
 *   the send time; the receiver records `now − sent` (one-way, same clock).
 * - `handshake`: a connect storm: `concurrency` workers each connect,
 *   authenticate, wait for proof of registration and close, until `total`
 *   handshakes or `maxMs`.
 * - `capacity`: connects `count` idle clients and holds them; on stdin
 *   `check` it sends one datagram across sampled pairs and reports delivery;
 *   on `exit` it closes everything.
 *
 * - `busy`: connects `count` clients, each sending one datagram per second
 *   to its partner until `exit` on stdin.
 *
 * Every loop is bounded in count and in time. Length (~820 lines): every
 * mode lives in this one script because each measured run spawns it as its
 * own process; the wire client is in `_wire.ts`.
 */

import { cpuSeconds } from "./_proc.ts";
import {
  contentsOffset,
  datagramFrameLen,
  dial,
  type Identity,
  type Kind,
  type LeanConn,
  newIdentity,
  writeDatagramFrame,
} from "./_wire.ts";

/** A pair with no progress for this long gives up its window (counted as lost), ms. */
const STALL_MS = 1000;
/** Most datagrams written in one write call by a `forward` sender. */
const MAX_BATCH = 64;
/** Longest wait for one connection's handshake, ms. */
const DIAL_TIMEOUT_MS = 10_000;
/** How long probes may take to get through before a pair is declared broken, ms. */
const PROBE_TIMEOUT_MS = 10_000;

/** `forward` spec. */
export interface ForwardSpec {
  /** Process whose CPU time is read at the edges of the measuring window. */
  serverPid?: number;
  mode: "forward";
  port: number;
  kind: Kind;
  pairs: number;
  /** Most datagrams in flight per pair. */
  window: number;
  /** Datagram contents, bytes. */
  payload: number;
  warmupMs: number;
  measureMs: number;
  /**
   * Traffic shape (default `batched`): `batched` writes up to
   * {@link MAX_BATCH} `payload`-byte datagrams per write; `unbatched` writes
   * one datagram per write, contents sizes drawn from
   * {@link UNBATCHED_MIN}..{@link UNBATCHED_MAX} bytes by a generator seeded
   * per sender (the same sequence for relay and baseline); `fanin` is
   * `unbatched` from `pairs` senders to one receiver.
   */
  shape?: Shape;
}

/** Traffic shapes of `forward`; see {@link ForwardSpec.shape}. */
export type Shape = "batched" | "unbatched" | "fanin";

/** Smallest and largest datagram contents of the unbatched shapes, bytes (QUIC packets). */
export const UNBATCHED_MIN = 60;
export const UNBATCHED_MAX = 1400;
/** Datagrams in flight over all fan-in senders: below the relay's 512-frame queue per client, so no tail drop. */
export const FANIN_WINDOW_TOTAL = 384;

/** `latency` spec. */
export interface LatencySpec {
  /** Process whose CPU time is read at the edges of the measuring window. */
  serverPid?: number;
  mode: "latency";
  port: number;
  /** Port the receivers connect to, if not `port` (another relay instance: the mesh scenario). */
  rxPort?: number;
  kind: Kind;
  pairs: number;
  /** Total datagrams per second over all pairs. */
  rate: number;
  payload: number;
  warmupMs: number;
  measureMs: number;
}

/** `handshake` spec. */
export interface HandshakeSpec {
  /** Process whose CPU time is read at the edges of the measuring window. */
  serverPid?: number;
  mode: "handshake";
  port: number;
  total: number;
  concurrency: number;
  maxMs: number;
}

/** `capacity` spec. */
export interface CapacitySpec {
  mode: "capacity";
  port: number;
  count: number;
  concurrency: number;
  /** Global index of our first client: even indices are 0.35, odd 1.x. */
  first: number;
  /** Pairs sampled by `check`. */
  checkPairs: number;
}

/**
 * `busy` spec: `count` clients (even global index 0.35, odd 1.x), each
 * sending one `payload`-byte datagram per second to its partner (index
 * xor 1), spread evenly over the second, until `exit` on stdin.
 */
export interface BusySpec {
  mode: "busy";
  port: number;
  count: number;
  concurrency: number;
  /** Global index of our first client (even). */
  first: number;
  payload: number;
}

/** Any spec. */
export type Spec = ForwardSpec | LatencySpec | HandshakeSpec | CapacitySpec | BusySpec;

function emit(event: string, fields: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ event, ...fields }));
}

/** CPU seconds of the server and of this process, and the time, at one edge of the measuring window. */
interface Edge {
  server: number;
  self: number;
  at: number;
}

/** Reads both CPU clocks now (both at the same instant, so the window is exact). */
function edge(serverPid: number | undefined): Edge {
  return { server: serverPid ? cpuSeconds(serverPid) : NaN, self: cpuSeconds("self"), at: performance.now() };
}

/** Result fields for the CPU used between two edges. */
function cpuFields(a: Edge, b: Edge): Record<string, number> {
  return { server_cpu_s: b.server - a.server, gen_cpu_s: b.self - a.self, wall_s: (b.at - a.at) / 1000 };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs `fn` with a deadline; a late result is abandoned and `onTimeout` cleans up. */
async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, rej) => timer = setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Dials with a deadline; a connection that completes after it is closed. */
function dialBounded(port: number, kind: Kind, opts: Parameters<typeof dial>[2]): Promise<LeanConn> {
  const p = dial(port, kind, opts);
  return withTimeout(p, DIAL_TIMEOUT_MS, `${kind} handshake`).catch((e) => {
    p.then((c) => c.close(), () => {});
    throw e;
  });
}

/** Makes `n` identities, `batch` at a time. */
async function identities(n: number): Promise<Identity[]> {
  const out: Identity[] = [];
  while (out.length < n) {
    const k = Math.min(256, n - out.length);
    out.push(...await Promise.all(Array.from({ length: k }, () => newIdentity())));
  }
  return out;
}

/** One flow: a sender connection, a receiver connection and their counters. */
interface Pair {
  index: number;
  tx: LeanConn;
  rx: LeanConn;
  /** Receiver key (relay) or id (baseline). */
  dst: Uint8Array;
  sent: number;
  /** Highest sequence number received. */
  acked: number;
  received: number;
  /** Time of the last delivery, and the longest gap between two (fairness), ms. */
  lastAt: number;
  maxGap: number;
  lost: number;
  probed: boolean;
  wake: (() => void) | null;
}

/**
 * Connects `pairs` flows of `kind`: receivers first (on `rxPort`, default
 * `port`), so senders never address a missing peer. With `receivers` <
 * `pairs`, sender i sends to receiver i mod `receivers` (fan-in), and flows
 * share that receiver's connection.
 */
async function connectPairs(
  port: number,
  kind: Kind,
  pairs: number,
  rxPort = port,
  receivers = pairs,
): Promise<Pair[]> {
  const relay = kind === "v2" || kind === "derp";
  const ids = relay ? await identities(pairs + receivers) : [];
  // Baseline ids: senders 0..pairs-1, receivers from RX_ID_BASE on.
  const RX_ID_BASE = 100_000;
  const rxs: LeanConn[] = [];
  for (let j = 0; j < receivers; j++) {
    rxs.push(
      await dialBounded(rxPort, kind, {
        bufSize: 256 * 1024,
        confirm: true,
        ...(relay ? { id: ids[pairs + j]! } : { me: RX_ID_BASE + j }),
      }),
    );
  }
  const out: Pair[] = [];
  for (let i = 0; i < pairs; i++) {
    const j = i % receivers;
    const tx = await dialBounded(port, kind, {
      bufSize: 4096,
      confirm: true,
      ...(relay ? { id: ids[i]! } : { me: i, to: RX_ID_BASE + j }),
    });
    // Baselines: the receiver's id in the first 4 bytes of the key field, where baseline_tcp reads it.
    const dst = relay ? ids[pairs + j]!.pub : new Uint8Array(32);
    if (!relay) new DataView(dst.buffer).setUint32(0, RX_ID_BASE + j);
    out.push({
      index: i,
      tx,
      rx: rxs[j]!,
      dst,
      sent: 0,
      acked: 0,
      received: 0,
      lastAt: 0,
      maxGap: 0,
      lost: 0,
      probed: false,
      wake: null,
    });
  }
  return out;
}

/** Builds one datagram frame for `pair` with sequence number `seq` (0 = probe). */
function datagram(kind: Kind, pair: Pair, payload: number, seq: number): Uint8Array {
  const f = new Uint8Array(datagramFrameLen(kind, payload));
  const c = writeDatagramFrame(kind, f, 0, pair.dst, payload);
  const dv = new DataView(f.buffer);
  dv.setUint32(c, pair.index);
  dv.setUint32(c + 4, seq);
  dv.setFloat64(c + 8, performance.now());
  return f;
}

/** Sends a probe (seq 0) on every pair until each receiver has seen one. */
async function probe(kind: Kind, pairs: Pair[], payload: number): Promise<void> {
  const deadline = performance.now() + PROBE_TIMEOUT_MS;
  while (pairs.some((p) => !p.probed)) {
    if (performance.now() > deadline) {
      const n = pairs.filter((p) => !p.probed).length;
      throw new Error(`${n} of ${pairs.length} pairs delivered no probe within ${PROBE_TIMEOUT_MS} ms`);
    }
    for (const p of pairs) if (!p.probed) await p.tx.write(datagram(kind, p, payload, 0));
    await sleep(100);
  }
}

/** Reads the u32 at `b[i..i+4]`, big-endian. */
function u32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) >>> 0) + (b[i + 1]! << 16) + (b[i + 2]! << 8) + b[i + 3]!;
}

/** A small seeded generator (mulberry32): the same sizes for relay and baseline runs. */
function seeded(seed: number): () => number {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

/** Contents sizes the unbatched shapes cycle through, per sender. */
const SIZE_TABLE = 4096;

async function runForward(spec: ForwardSpec): Promise<void> {
  const { kind, payload } = spec;
  const shape = spec.shape ?? "batched";
  const fanin = shape === "fanin";
  const pairs = await connectPairs(spec.port, kind, spec.pairs, spec.port, fanin ? 1 : spec.pairs);
  // Fan-in: the window is shared by all senders, so the one receiver's relay queue never overflows.
  const W = fanin ? Math.max(2, Math.floor(FANIN_WINDOW_TOTAL / spec.pairs)) : spec.window;
  const coff = contentsOffset(kind);
  // Batched: refill when this much of the window is free, so writes carry several datagrams.
  const refill = shape === "batched" ? Math.max(1, Math.min(32, W >> 2)) : 1;
  let delivered = 0;
  let deliveredBytes = 0;
  let measuring = false;
  const onDatagram = (b: Uint8Array, c: number, e: number) => {
    if (e - c < 16) return;
    const p = pairs[u32(b, c)];
    if (p === undefined) return;
    const seq = u32(b, c + 4);
    if (seq === 0) {
      p.probed = true;
      return;
    }
    p.received++;
    delivered++;
    deliveredBytes += e - c;
    const now = performance.now();
    if (measuring && p.lastAt > 0 && now - p.lastAt > p.maxGap) p.maxGap = now - p.lastAt;
    p.lastAt = now;
    if (seq > p.acked) p.acked = seq;
    if (p.wake !== null && p.sent - p.acked <= W - refill) {
      const w = p.wake;
      p.wake = null;
      w();
    }
  };
  for (const rx of new Set(pairs.map((p) => p.rx))) rx.readLoop((_type, b, s, e) => onDatagram(b, s + coff, e));
  for (const p of pairs) p.tx.readLoop(() => {});
  await probe(kind, pairs, 64);
  emit("ready", { pairs: pairs.length, window: W });

  let running = true;
  /** Waits for window space; false once the run is over. Gives up a window lost for {@link STALL_MS}. */
  const stall = { acked: new Map<Pair, { acked: number; at: number }>() };
  const waitSpace = async (p: Pair): Promise<void> => {
    // Woken by the receiver, or by the stall ticker below.
    await new Promise<void>((r) => p.wake = r);
    const now = performance.now();
    const seen = stall.acked.get(p) ?? { acked: -1, at: now };
    if (p.acked !== seen.acked) stall.acked.set(p, { acked: p.acked, at: now });
    else if (now - seen.at > STALL_MS) {
      // Everything in flight was dropped: give it up so the pair goes on.
      p.lost += p.sent - p.acked;
      p.acked = p.sent;
      stall.acked.set(p, { acked: p.acked, at: now });
    }
  };
  const pumpBatched = async (p: Pair) => {
    const frameLen = datagramFrameLen(kind, payload);
    const tmpl = new Uint8Array(MAX_BATCH * frameLen);
    const offs: number[] = [];
    for (let i = 0; i < MAX_BATCH; i++) offs.push(writeDatagramFrame(kind, tmpl, i * frameLen, p.dst, payload));
    const dv = new DataView(tmpl.buffer);
    for (const o of offs) dv.setUint32(o, p.index);
    while (running && !p.tx.closed && !p.rx.closed) {
      const space = W - (p.sent - p.acked);
      if (space < refill) {
        await waitSpace(p);
        continue;
      }
      const k = Math.min(space, MAX_BATCH);
      const ts = performance.now();
      for (let i = 0; i < k; i++) {
        dv.setUint32(offs[i]! + 4, ++p.sent);
        dv.setFloat64(offs[i]! + 8, ts);
      }
      await p.tx.write(tmpl.subarray(0, k * frameLen));
    }
  };
  const pumpUnbatched = async (p: Pair) => {
    const rand = seeded(0x5eed + p.index);
    const sizes = Array.from(
      { length: SIZE_TABLE },
      () => UNBATCHED_MIN + Math.floor(rand() * (UNBATCHED_MAX - UNBATCHED_MIN + 1)),
    );
    // One slot per datagram in flight (and the writes queued behind them): a slot is reused only
    // after a later datagram of this pair arrived, so its write has completed.
    const slots = W + 8;
    const slotLen = datagramFrameLen(kind, UNBATCHED_MAX);
    const ring = new Uint8Array(slots * slotLen);
    const dv = new DataView(ring.buffer);
    let last: Promise<void> = Promise.resolve();
    while (running && !p.tx.closed && !p.rx.closed) {
      const space = W - (p.sent - p.acked);
      if (space < 1) {
        await last;
        if (W - (p.sent - p.acked) < 1) await waitSpace(p);
        continue;
      }
      const ts = performance.now();
      for (let i = 0; i < space; i++) {
        const seq = ++p.sent;
        const n = sizes[seq % SIZE_TABLE]!;
        const at = (seq % slots) * slotLen;
        const c = writeDatagramFrame(kind, ring, at, p.dst, n);
        dv.setUint32(c, p.index);
        dv.setUint32(c + 4, seq);
        dv.setFloat64(c + 8, ts);
        // One write call per datagram; LeanConn keeps them in order.
        last = p.tx.write(ring.subarray(at, at + datagramFrameLen(kind, n)));
      }
      await last;
    }
  };
  const pump = shape === "batched" ? pumpBatched : pumpUnbatched;
  const pumps = pairs.map((p) => pump(p).catch(() => {}));
  // One shared ticker (not a timer per wait) lets a pair whose window was lost notice the stall.
  const ticker = setInterval(() => {
    for (const p of pairs) {
      const w = p.wake;
      p.wake = null;
      w?.();
    }
  }, 100);
  await sleep(spec.warmupMs);
  const d0 = delivered;
  const b0 = deliveredBytes;
  const e0 = edge(spec.serverPid);
  emit("measure-start");
  measuring = true;
  await sleep(spec.measureMs);
  measuring = false;
  const d1 = delivered;
  const b1 = deliveredBytes;
  const e1 = edge(spec.serverPid);
  emit("measure-end");
  running = false;
  for (const p of pairs) p.wake?.();
  await withTimeout(Promise.all(pumps), 5000, "stopping senders").catch(() => {});
  // Let what is in flight arrive before closing, so the server's drop counter only shows real drops.
  const drainEnd = performance.now() + 2000;
  while (pairs.some((p) => p.acked < p.sent && !p.rx.closed) && performance.now() < drainEnd) await sleep(10);
  clearInterval(ticker);
  const broken = pairs.filter((p) => p.tx.closed || p.rx.closed).map((p) =>
    `${p.index}: ${p.rx.endReason || p.tx.endReason}`
  );
  for (const p of pairs) {
    p.tx.close();
    p.rx.close();
  }
  const secs = (e1.at - e0.at) / 1000;
  emit("result", {
    datagrams: d1 - d0,
    seconds: secs,
    dgram_s: (d1 - d0) / secs,
    mib_s: (b1 - b0) / secs / (1 << 20),
    window: W,
    lost: pairs.reduce((a, p) => a + p.lost, 0),
    undelivered: pairs.reduce((a, p) => a + p.sent - p.acked, 0),
    // Exact count after the drain: datagrams sent and never received (a real loss, not a slow window).
    missing: pairs.reduce((a, p) => a + p.sent - p.received, 0),
    // Longest wait between two deliveries on any one pair while measuring: starvation shows here.
    max_gap_ms: Math.round(Math.max(...pairs.map((p) => p.maxGap))),
    closed: broken.slice(0, 3),
    ...cpuFields(e0, e1),
  });
}

async function runLatency(spec: LatencySpec): Promise<void> {
  const { kind, payload } = spec;
  const pairs = await connectPairs(spec.port, kind, spec.pairs, spec.rxPort);
  const coff = contentsOffset(kind);
  const cap = Math.ceil(spec.rate * (spec.measureMs / 1000) * 1.2) + 1000;
  const lat = new Float64Array(cap);
  let n = 0;
  let windowStart = Infinity;
  let windowEnd = Infinity;
  let receivedInWindow = 0;
  for (const p of pairs) {
    p.rx.readLoop((_type, b, s, e) => {
      const now = performance.now();
      const c = s + coff;
      if (e - c < 16) return;
      const seq = u32(b, c + 4);
      if (seq === 0) {
        p.probed = true;
        return;
      }
      const sentAt = new DataView(b.buffer, b.byteOffset + c + 8, 8).getFloat64(0);
      if (sentAt >= windowStart && sentAt < windowEnd) {
        receivedInWindow++;
        if (n < cap) lat[n++] = now - sentAt;
      }
    });
    p.tx.readLoop(() => {});
  }
  await probe(kind, pairs, payload);
  emit("ready", { pairs: pairs.length });
  // One prebuilt frame per pair; each send copies it, since writes complete asynchronously.
  const tmpls = pairs.map((p) => datagram(kind, p, payload, 1));
  // Every frame of a kind has the same layout, so one contents offset serves all pairs.
  const coff0 = writeDatagramFrame(kind, new Uint8Array(datagramFrameLen(kind, payload)), 0, pairs[0]!.dst, payload);
  const t0 = performance.now();
  const tEnd = t0 + spec.warmupMs + spec.measureMs;
  let sent = 0;
  let sentInWindow = 0;
  let started = false;
  let e0: Edge | null = null;
  for (let now = t0; now < tEnd; now = performance.now()) {
    if (!started && now >= t0 + spec.warmupMs) {
      started = true;
      windowStart = now;
      windowEnd = tEnd;
      e0 = edge(spec.serverPid);
      emit("measure-start");
    }
    const due = Math.floor(((now - t0) * spec.rate) / 1000);
    while (sent < due) {
      const i = sent % pairs.length;
      const p = pairs[i]!;
      const f = tmpls[i]!.slice();
      const dv = new DataView(f.buffer);
      dv.setUint32(coff0 + 4, ++p.sent);
      const ts = performance.now();
      dv.setFloat64(coff0 + 8, ts);
      if (ts >= windowStart && ts < windowEnd) sentInWindow++;
      p.tx.write(f).catch(() => {});
      sent++;
    }
    await sleep(1);
  }
  const e1 = edge(spec.serverPid);
  emit("measure-end");
  // Let the last datagrams arrive.
  const drainEnd = performance.now() + 2000;
  while (receivedInWindow < sentInWindow && performance.now() < drainEnd) await sleep(10);
  for (const p of pairs) {
    p.tx.close();
    p.rx.close();
  }
  const sorted = lat.slice(0, n).sort();
  emit("result", {
    sent: sentInWindow,
    received: receivedInWindow,
    achieved_rate: sentInWindow / ((windowEnd - windowStart) / 1000),
    p50_ms: quantile(sorted, 0.5),
    p99_ms: quantile(sorted, 0.99),
    p999_ms: quantile(sorted, 0.999),
    max_ms: n ? sorted[n - 1] : NaN,
    // Raw one-way latencies (µs, in arrival order), so the caller can pool several rounds.
    samples_us: Array.from(lat.subarray(0, n), (x) => Math.round(x * 1000)),
    ...cpuFields(e0 ?? e1, e1),
  });
}

/** The `q` quantile of sorted `a` (nearest rank), or NaN when empty. */
export function quantile(a: Float64Array | number[], q: number): number {
  if (a.length === 0) return NaN;
  return a[Math.min(a.length - 1, Math.max(0, Math.ceil(q * a.length) - 1))]!;
}

async function runHandshake(spec: HandshakeSpec): Promise<void> {
  const tk = performance.now();
  // Distinct keys, reused only after the pool wraps (long after their connections closed).
  const pool = await identities(Math.min(spec.total, 4096));
  const keygenMs = performance.now() - tk;
  emit("ready", { keys: pool.length, keygen_ms: keygenMs });
  const lat = new Float64Array(spec.total);
  let started = 0;
  let ok = 0;
  let failed = 0;
  const errors = new Map<string, number>();
  const byKind = { derp: 0, v2: 0 };
  const t0 = performance.now();
  const deadline = t0 + spec.maxMs;
  const e0 = edge(spec.serverPid);
  emit("measure-start");
  const worker = async () => {
    while (started < spec.total && performance.now() < deadline) {
      const i = started++;
      const kind: Kind = i % 2 === 0 ? "derp" : "v2";
      const t = performance.now();
      try {
        const c = await dialBounded(spec.port, kind, { id: pool[i % pool.length]!, confirm: true, bufSize: 1024 });
        lat[ok++] = performance.now() - t;
        byKind[kind as "derp" | "v2"]++;
        c.close();
      } catch (e) {
        failed++;
        const msg = (e as Error).message;
        errors.set(msg, (errors.get(msg) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  const e1 = edge(spec.serverPid);
  emit("measure-end");
  const sorted = lat.subarray(0, ok).sort();
  emit("result", {
    ok,
    failed,
    seconds: elapsed,
    per_s: ok / elapsed,
    derp: byKind.derp,
    v2: byKind.v2,
    p50_ms: quantile(sorted, 0.5),
    p99_ms: quantile(sorted, 0.99),
    errors: [...errors].slice(0, 3).map(([m, k]) => `${k}× ${m}`),
    ...cpuFields(e0, e1),
  });
}

async function runCapacity(spec: CapacitySpec): Promise<void> {
  const ids = await identities(spec.count);
  emit("ready", { keys: ids.length });
  const conns: (LeanConn | null)[] = new Array(spec.count).fill(null);
  const got = new Set<number>();
  let next = 0;
  let failed = 0;
  const errors = new Map<string, number>();
  const kindOf = (i: number): Kind => (spec.first + i) % 2 === 0 ? "derp" : "v2";
  const t0 = performance.now();
  const worker = async () => {
    while (next < spec.count) {
      const i = next++;
      const kind = kindOf(i);
      try {
        const c = await dialBounded(spec.port, kind, { id: ids[i]!, confirm: true, bufSize: 1024 });
        conns[i] = c;
        const coff = contentsOffset(kind);
        c.readLoop((_type, b, s, e) => {
          if (e - s - coff >= 8) got.add(u32(b, s + coff + 4));
        });
      } catch (e) {
        failed++;
        const msg = (e as Error).message;
        errors.set(msg, (errors.get(msg) ?? 0) + 1);
      }
      if ((i + 1) % 1000 === 0) emit("progress", { done: i + 1 });
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  const alive = () => conns.filter((c) => c !== null && !c.closed).length;
  emit("connected", {
    ok: spec.count - failed,
    failed,
    seconds: (performance.now() - t0) / 1000,
    errors: [...errors].slice(0, 3).map(([m, k]) => `${k}× ${m}`),
  });
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buf = "";
  for await (const chunk of lines) {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const cmd = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (cmd === "check") {
        emit("checked", await check(spec, conns, ids, kindOf, got, alive()));
      } else if (cmd === "exit") {
        for (const c of conns) c?.close();
        emit("done");
        return;
      }
    }
  }
  for (const c of conns) c?.close();
}

/** Sends one datagram over `checkPairs` sampled pairs covering all four generation combinations. */
async function check(
  spec: CapacitySpec,
  conns: (LeanConn | null)[],
  ids: Identity[],
  kindOf: (i: number) => Kind,
  got: Set<number>,
  alive: number,
): Promise<Record<string, unknown>> {
  const live = conns.map((c, i) => (c !== null && !c.closed ? i : -1)).filter((i) => i >= 0);
  const byKind = { derp: live.filter((i) => kindOf(i) === "derp"), v2: live.filter((i) => kindOf(i) === "v2") };
  const combos: [Kind, Kind][] = [["derp", "derp"], ["derp", "v2"], ["v2", "derp"], ["v2", "v2"]];
  const tokens: number[] = [];
  let sent = 0;
  for (let j = 0; j < spec.checkPairs; j++) {
    const [a, b] = combos[j % 4]!;
    const from = byKind[a as "derp" | "v2"];
    const to = byKind[b as "derp" | "v2"];
    if (from.length === 0 || to.length < 2) continue;
    const src = from[Math.floor(Math.random() * from.length)]!;
    let dst = to[Math.floor(Math.random() * to.length)]!;
    if (dst === src) dst = to[(to.indexOf(dst) + 1) % to.length]!;
    const token = 1_000_000 + j;
    const f = new Uint8Array(datagramFrameLen(a, 64));
    const c = writeDatagramFrame(a, f, 0, ids[dst]!.pub, 64);
    new DataView(f.buffer).setUint32(c + 4, token);
    tokens.push(token);
    conns[src]!.write(f).catch(() => {});
    sent++;
  }
  const deadline = performance.now() + 5000;
  const delivered = () => tokens.filter((t) => got.has(t)).length;
  while (delivered() < sent && performance.now() < deadline) await sleep(20);
  return { sent, delivered: delivered(), alive };
}

async function runBusy(spec: BusySpec): Promise<void> {
  const ids = await identities(spec.count);
  emit("ready", { keys: ids.length });
  const conns: (LeanConn | null)[] = new Array(spec.count).fill(null);
  const kindOf = (i: number): Kind => (spec.first + i) % 2 === 0 ? "derp" : "v2";
  let next = 0;
  let failed = 0;
  let received = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < spec.count) {
      const i = next++;
      const kind = kindOf(i);
      try {
        const c = await dialBounded(spec.port, kind, { id: ids[i]!, confirm: true, bufSize: 1024 });
        conns[i] = c;
        // Datagrams arrive as RecvPacket (0.35, type 5) or RelayToClientDatagram (1.x, type 6).
        const datagramType = kind === "derp" ? 5 : 6;
        c.readLoop((type) => {
          if (type === datagramType) received++;
        });
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  emit("connected", { ok: spec.count - failed, failed, seconds: (performance.now() - t0) / 1000 });
  // One prebuilt frame per client, to its partner; sent again each second.
  const frames = conns.map((c, i) => {
    const partner = i ^ 1;
    if (c === null || partner >= spec.count) return null;
    const f = new Uint8Array(datagramFrameLen(c.kind, spec.payload));
    writeDatagramFrame(c.kind, f, 0, ids[partner]!.pub, spec.payload);
    return f;
  });
  let sent = 0;
  let running = true;
  const TICK_MS = 10;
  const traffic = (async () => {
    let k = 0;
    const start = performance.now();
    while (running) {
      const due = Math.floor(((performance.now() - start) / 1000) * spec.count);
      // Bounded: at most one second's worth per tick, however late the timer fires.
      for (let n = 0; k < due && n < spec.count; n++, k++) {
        const i = k % spec.count;
        const f = frames[i];
        const c = conns[i];
        if (f && c && !c.closed) {
          c.write(f).catch(() => {});
          sent++;
        }
      }
      await sleep(TICK_MS);
    }
  })();
  emit("traffic");
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buf = "";
  for await (const chunk of lines) {
    buf += chunk;
    if (buf.includes("exit")) break;
  }
  running = false;
  await traffic;
  // Let the last datagrams arrive (bounded).
  const end = performance.now() + 1000;
  while (received < sent && performance.now() < end) await sleep(20);
  const alive = conns.filter((c) => c !== null && !c.closed).length;
  for (const c of conns) c?.close();
  emit("done", { sent, received, alive });
}

async function main(): Promise<void> {
  const spec = JSON.parse(Deno.args[0] ?? "{}") as Spec;
  switch (spec.mode) {
    case "forward":
      return await runForward(spec);
    case "latency":
      return await runLatency(spec);
    case "handshake":
      return await runHandshake(spec);
    case "capacity":
      return await runCapacity(spec);
    case "busy":
      return await runBusy(spec);
    default:
      throw new Error(`Unknown mode in spec: ${Deno.args[0]}`);
  }
}

if (import.meta.main) {
  try {
    await main();
    Deno.exit(0);
  } catch (e) {
    emit("error", { message: (e as Error).message });
    Deno.exit(1);
  }
}
