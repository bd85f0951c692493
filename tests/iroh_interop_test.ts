/**
 * @module
 * Interop of our relay with the real iroh 1.x library (npm `@number0/iroh`
 * 1.1.0, the Node-API binding of the Rust `iroh` 1.0 crate), not with our
 * spec-written test clients.
 *
 * Set-up of each test:
 * - the relay runs in this process on `127.0.0.1:<random>`;
 * - each real endpoint (`support/iroh_peer.cjs`) runs in its own
 *   loopback-only network namespace (`support/netns.ts`) where the relay
 *   appears as `http://127.0.0.1:3340/`; the bridge is the endpoint's only way
 *   out, so hole punching finds nothing and every QUIC packet crosses the
 *   relay;
 * - the bridge parses the `/relay` upgrade and the WebSocket frames on it
 *   ({@link RelayWireObserver}), which shows the negotiated subprotocol and
 *   the relay frame types in each direction, and can rewrite the offered
 *   subprotocols to force `iroh-relay-v1`;
 * - the dialer knows only the acceptor's id and the relay URL (no direct
 *   addresses) and echoes {@link PAYLOAD_BYTES} on one bidirectional stream.
 *
 * Spec: §1.2 (subprotocol negotiation), §2.3 (1.x frames), §8 (`/ping` makes a
 * 1.x client go online).
 */

import assert from "node:assert/strict";
import { configFromText } from "../config/mod.ts";
import { readV1Type } from "../relay/codec_v1.ts";
import { type RelayService, type StartOptions, startRelay } from "../relay/mod.ts";
import { WsReader } from "../relay/ws_frame.ts";
import { type BridgeConnInfo, type ForwardSpec, type LineProcess, Netns } from "./support/netns.ts";
import { connectClient, type TestRelayClient } from "./support/relay_client.ts";

/** The Node program driving a real iroh endpoint. */
const PEER_SCRIPT = new URL("./support/iroh_peer.cjs", import.meta.url).pathname;
/** Where the relay appears inside each namespace (the production port; the namespace is ours alone). */
const RELAY_PORT_IN_NS = 3340;
/** The relay URL the real endpoints use; plain http, so the bridge sees the upgrade in clear text. */
const RELAY_URL = `http://127.0.0.1:${RELAY_PORT_IN_NS}/`;
/** Application protocol of the echo. */
const ALPN = "relay-interop/echo/0";
/** Echoed stream size, bytes: 1 MiB, sixteen times the largest relay frame. */
const PAYLOAD_BYTES = 1 << 20;
/** Largest datagram content one relay frame carries, bytes (spec §2.3 `MAX_PACKET_SIZE`). */
const MAX_PACKET_BYTES = 65536;
/** Bound on an endpoint going online, ms: it needs one `/ping` answer (probes start at 200 ms). */
const ONLINE_TIMEOUT_MS = 20_000;
/** Bound on the whole echo, ms; it takes about a second on a quiet machine. */
const ECHO_TIMEOUT_MS = 30_000;
/** Relay frame types a 1.x relay may send (spec §2.3); Health is v1-only, Status v2-only. */
const R2C_TYPES = { 1: [0, 2, 3, 6, 7, 8, 9, 10, 11, 12], 2: [0, 2, 3, 6, 7, 8, 9, 10, 12, 13] } as const;

/** One JSON report line of `iroh_peer.cjs`. */
interface PeerEvent {
  event: string;
  [field: string]: unknown;
}

/** A path of a connection as `iroh_peer.cjs` reports it (`PathSnapshot`). */
interface PathReport {
  isSelected: boolean;
  isRelay: boolean;
  isIp: boolean;
  remoteAddr: string;
  stats: { udpTxBytes: number; udpRxBytes: number };
}

/**
 * Watches the relay traffic of one namespace's bridge: the first request and
 * response head of each connection, and the relay frame types of upgraded
 * ones. Optionally rewrites the offered `Sec-WebSocket-Protocol`.
 */
class RelayWireObserver {
  /** `Sec-WebSocket-Protocol` of each `/relay` request, as it reached the relay. */
  readonly offered: string[] = [];
  /** `Sec-WebSocket-Protocol` of each 101 response. */
  readonly negotiated: string[] = [];
  /** Relay → client frame types seen on upgraded connections. */
  readonly down = new Set<number>();
  /** Client → relay frame types seen on upgraded connections. */
  readonly up = new Set<number>();
  /** Every relay frame seen on upgraded connections, in order. */
  readonly frames: { dir: "up" | "down"; type: number }[] = [];
  /** Frames the observer could not parse (should stay empty). */
  readonly problems: string[] = [];
  #waiters: (() => void)[] = [];
  readonly #forceProtocol: string | undefined;
  readonly #streams = new Map<string, { head: Uint8Array | null; ws: WsReader | null }>();

  /** @param forceProtocol if set, the offered subprotocol list is replaced by this */
  constructor(forceProtocol?: string) {
    this.#forceProtocol = forceProtocol;
  }

  /** The forward to give {@link Netns.create}: relay port inside → `relayPort` outside. */
  forward(relayPort: number): ForwardSpec {
    return {
      port: RELAY_PORT_IN_NS,
      target: { hostname: "127.0.0.1", port: relayPort },
      http: {
        rewriteRequest: (head) => this.#request(head),
        onResponse: (head) => {
          if (head.startsWith("HTTP/1.1 101")) this.negotiated.push(headerOf(head, "sec-websocket-protocol") ?? "");
        },
      },
      tap: (dir, bytes, info) => this.#tap(dir, bytes, info),
    };
  }

  #request(head: string): string {
    if (!/^GET \/relay[ ?]/.test(head)) return head;
    if (this.#forceProtocol !== undefined) {
      head = head.replace(/^sec-websocket-protocol:.*$/im, `Sec-WebSocket-Protocol: ${this.#forceProtocol}`);
    }
    this.offered.push(headerOf(head, "sec-websocket-protocol") ?? "");
    return head;
  }

  #tap(dir: "up" | "down", bytes: Uint8Array, info: BridgeConnInfo): void {
    const key = `${info.conn}/${dir}`;
    let s = this.#streams.get(key);
    if (!s) this.#streams.set(key, s = { head: new Uint8Array(0), ws: null });
    let rest = bytes;
    if (s.head !== null) {
      // Skip the HTTP head; only a 101 (or its request) is followed by WebSocket frames.
      const all = concat(s.head, bytes);
      const end = findHeadEnd(all);
      if (end < 0) {
        s.head = all;
        return;
      }
      const text = new TextDecoder().decode(all.subarray(0, end));
      s.head = null;
      if (/^HTTP\/1\.1 101|^GET \/relay[ ?]/.test(text)) {
        s.ws = new WsReader({ maxMessage: 2 << 20, expectMasked: dir === "up" });
      }
      rest = all.subarray(end + 4);
    }
    if (!s.ws) return;
    try {
      s.ws.push(rest);
      for (let ev = s.ws.next(); ev !== null; ev = s.ws.next()) {
        if (ev.kind !== "message" || !ev.binary) continue;
        const type = readV1Type(ev.data).type;
        (dir === "up" ? this.up : this.down).add(type);
        this.frames.push({ dir, type });
      }
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w();
    } catch (e) {
      this.problems.push(`${key}: ${(e as Error).message}`);
      s.ws = null;
    }
  }

  /**
   * Waits until `done(frames)` holds.
   * @throws {Error} after `timeoutMs`
   */
  async waitForFrames(
    done: (frames: readonly { dir: string; type: number }[]) => boolean,
    timeoutMs: number,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.frames)) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`Frames not seen within ${timeoutMs} ms: ${JSON.stringify(this.frames.slice(-30))}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }
}

/** Value of header `name` (lowercase) in an HTTP head, or undefined. */
function headerOf(head: string, name: string): string | undefined {
  for (const line of head.split("\r\n").slice(1)) {
    const i = line.indexOf(":");
    if (i > 0 && line.slice(0, i).trim().toLowerCase() === name) return line.slice(i + 1).trim();
  }
  return undefined;
}

/** Offset of the CRLFCRLF ending an HTTP head, or -1. */
function findHeadEnd(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Starts a relay on a random loopback port, runs `fn`, always closes the relay. */
async function withRelay(
  fn: (relay: RelayService, port: number) => Promise<void>,
  options: StartOptions = {},
): Promise<void> {
  const { config } = configFromText('http_bind_addr = "127.0.0.1:0"\nenable_metrics = false', "iroh_interop_test");
  const relay = await startRelay(config, options);
  try {
    await fn(relay, relay.httpAddr!.port);
  } finally {
    await relay.close();
  }
}

/**
 * Waits for the next report `event` of a peer.
 * @throws {Error} if the peer reports `error` first, exits, or `timeoutMs` passes
 */
async function nextEvent(p: LineProcess, event: string, timeoutMs: number): Promise<PeerEvent> {
  const line = await p.nextLine({
    timeoutMs,
    match: (l) => l.startsWith("{") && [event, "error"].includes((JSON.parse(l) as PeerEvent).event),
  });
  const ev = JSON.parse(line) as PeerEvent;
  if (ev.event === "error") throw new Error(`Peer reported an error: ${ev.message}\n${p.diagnostics()}`);
  return ev;
}

/** Starts a real endpoint in `ns` and waits until it is online; returns it and its id. */
async function startPeer(ns: Netns, config: Record<string, unknown>): Promise<{ peer: LineProcess; id: string }> {
  const peer = ns.spawn("node", [
    PEER_SCRIPT,
    JSON.stringify({ relayUrl: RELAY_URL, alpn: ALPN, onlineTimeoutMs: ONLINE_TIMEOUT_MS, ...config }),
  ]);
  const bound = await nextEvent(peer, "bound", ONLINE_TIMEOUT_MS);
  await nextEvent(peer, "online", ONLINE_TIMEOUT_MS);
  return { peer, id: String(bound.id) };
}

/** What {@link echoThroughRelay} saw. */
interface EchoResult {
  /** The dialer's `done` report. */
  done: PeerEvent;
  /** The acceptor's `echoed` report. */
  echoed: PeerEvent;
  /** Relay counters: growth of `bytesSent` and `sendPacketsSent` over the echo. */
  relayBytesSent: number;
  relayPacketsSent: number;
  /** `core.clientsPerGeneration` while both endpoints were connected. */
  gauge: Readonly<Record<"0.35" | "1.x", number>>;
  /** Wall time from spawning the dialer to its `done`, ms. */
  wallMs: number;
}

/**
 * Runs the echo between an accepting endpoint in `nsA` and a dialing one in
 * `nsB`, both online before any datagram is counted; closes both cleanly.
 */
async function echoThroughRelay(relay: RelayService, nsA: Netns, nsB: Netns): Promise<EchoResult> {
  const { peer: acceptor, id } = await startPeer(nsA, { mode: "accept-echo" });
  const before = { ...relay.core.metrics.c };
  const t0 = performance.now();
  const dialer = nsB.spawn("node", [
    PEER_SCRIPT,
    JSON.stringify({
      mode: "connect-send",
      relayUrl: RELAY_URL,
      alpn: ALPN,
      peerId: id,
      bytes: PAYLOAD_BYTES,
      onlineTimeoutMs: ONLINE_TIMEOUT_MS,
      opTimeoutMs: ECHO_TIMEOUT_MS,
    }),
  ]);
  const done = await nextEvent(dialer, "done", ECHO_TIMEOUT_MS);
  const wallMs = performance.now() - t0;
  const echoed = await nextEvent(acceptor, "echoed", ECHO_TIMEOUT_MS);
  // The dialer keeps its connection until told to close, so both are registered now.
  const gauge = { ...relay.core.clientsPerGeneration };
  const after = relay.core.metrics.c;
  await dialer.send("close");
  await nextEvent(dialer, "exit", ECHO_TIMEOUT_MS);
  await nextEvent(acceptor, "closed", ECHO_TIMEOUT_MS);
  return {
    done,
    echoed,
    relayBytesSent: after.bytesSent - before.bytesSent,
    relayPacketsSent: after.sendPacketsSent - before.sendPacketsSent,
    gauge,
    wallMs,
  };
}

/** Asserts the payload came back intact and only ever used the relay path. */
function assertRelayedEcho(r: EchoResult): void {
  assert.equal(r.done.intact, true, "echoed payload differs from what was sent");
  assert.equal(r.done.bytes, PAYLOAD_BYTES);
  assert.equal(r.echoed.bytes, PAYLOAD_BYTES);
  for (const [side, report] of [["dialer", r.done], ["acceptor", r.echoed]] as const) {
    const paths = report.paths as PathReport[];
    assert.ok(paths.every((p) => p.isRelay && !p.isIp), `${side} has a non-relay path: ${JSON.stringify(paths)}`);
    const selected = paths.filter((p) => p.isSelected);
    assert.equal(selected.length, 1, `${side} paths: ${JSON.stringify(paths)}`);
    assert.equal(selected[0]!.remoteAddr, RELAY_URL);
  }
  // Each direction of the stream crossed the dialer's relay path in QUIC packets, which add overhead.
  const dialerPath = (r.done.paths as PathReport[]).find((p) => p.isSelected)!;
  assert.ok(dialerPath.stats.udpTxBytes >= PAYLOAD_BYTES, `relay path tx ${dialerPath.stats.udpTxBytes}`);
  assert.ok(dialerPath.stats.udpRxBytes >= PAYLOAD_BYTES, `relay path rx ${dialerPath.stats.udpRxBytes}`);
  // Relay side: both directions were forwarded, in frames of at most 64 KiB each.
  assert.ok(r.relayBytesSent >= 2 * PAYLOAD_BYTES, `relay bytesSent grew by ${r.relayBytesSent}`);
  assert.ok(
    r.relayPacketsSent >= (2 * PAYLOAD_BYTES) / MAX_PACKET_BYTES,
    `relay sendPacketsSent grew by ${r.relayPacketsSent}`,
  );
}

/** Test output: what the echo cost, and what each bridge saw of the relay protocol. */
function logEcho(label: string, r: EchoResult, wires: readonly RelayWireObserver[]): void {
  const ms = r.done.elapsedMs as number;
  const mib = PAYLOAD_BYTES / 2 ** 20;
  console.log(
    `${label}: ${mib} MiB each way in ${ms.toFixed(0)} ms (${(mib / (ms / 1000)).toFixed(1)} MiB/s per direction), ` +
      `dial-to-done ${r.wallMs.toFixed(0)} ms, relay forwarded ${r.relayPacketsSent} frames / ${r.relayBytesSent} B`,
  );
  for (const w of wires) {
    const types = (s: Set<number>) => [...s].sort((a, b) => a - b).join(",");
    console.log(
      `  bridge: negotiated ${w.negotiated.join(" ")}, frame types up [${types(w.up)}] down [${types(w.down)}]`,
    );
  }
}

Deno.test("real iroh 1.x endpoints echo 1 MiB through the relay over iroh-relay-v2", async () => {
  await withRelay(async (relay, port) => {
    const wires = [new RelayWireObserver(), new RelayWireObserver()] as const;
    await using nsA = await Netns.create([wires[0].forward(port)]);
    await using nsB = await Netns.create([wires[1].forward(port)]);
    const r = await echoThroughRelay(relay, nsA, nsB);
    logEcho("v2", r, wires);
    assertRelayedEcho(r);
    assert.deepEqual(r.gauge, { "0.35": 0, "1.x": 2 });
    for (const w of wires) {
      // The real client offers both and our relay picks the newest (spec §1.2).
      assert.deepEqual(w.offered, ["iroh-relay-v2, iroh-relay-v1"]);
      assert.deepEqual(w.negotiated, ["iroh-relay-v2"]);
      assert.deepEqual(w.problems, []);
      assert.ok([...w.down].every((t) => (R2C_TYPES[2] as readonly number[]).includes(t)), `down ${[...w.down]}`);
    }
    // Bytes crossed each namespace's bridge, its only way out.
    assert.ok(nsB.stats(RELAY_PORT_IN_NS).bytesUp >= PAYLOAD_BYTES);
    assert.ok(nsB.stats(RELAY_PORT_IN_NS).bytesDown >= PAYLOAD_BYTES);
  });
});

Deno.test("real iroh 1.x endpoints echo through the relay when only iroh-relay-v1 is offered", async () => {
  await withRelay(async (relay, port) => {
    const wires = [new RelayWireObserver("iroh-relay-v1"), new RelayWireObserver("iroh-relay-v1")] as const;
    await using nsA = await Netns.create([wires[0].forward(port)]);
    await using nsB = await Netns.create([wires[1].forward(port)]);
    const r = await echoThroughRelay(relay, nsA, nsB);
    logEcho("v1", r, wires);
    assertRelayedEcho(r);
    assert.deepEqual(r.gauge, { "0.35": 0, "1.x": 2 });
    for (const w of wires) {
      assert.deepEqual(w.offered, ["iroh-relay-v1"]);
      assert.deepEqual(w.negotiated, ["iroh-relay-v1"]);
      assert.deepEqual(w.problems, []);
      // A v1 client treats Status (13) as fatal: the relay must speak v1 framing to it.
      assert.ok([...w.down].every((t) => (R2C_TYPES[1] as readonly number[]).includes(t)), `down ${[...w.down]}`);
      assert.ok(w.down.has(6) || w.down.has(7), `no datagram frames down: ${[...w.down]}`);
    }
  });
});

Deno.test("0.35 clients exchange packets while real iroh 1.x endpoints (v2 and v1) echo on the same relay", async () => {
  await withRelay(async (relay, port) => {
    const wires = [new RelayWireObserver(), new RelayWireObserver("iroh-relay-v1")] as const;
    await using nsA = await Netns.create([wires[0].forward(port)]);
    await using nsB = await Netns.create([wires[1].forward(port)]);
    const old: TestRelayClient[] = [];
    try {
      old.push(await connectClient(port, "derp"), await connectClient(port, "ws035"));
      // A Pong means the relay has registered the 0.35 client (ClientInfo gets no reply).
      for (const c of old) await c.ping();
      const [derp, ws] = old as [TestRelayClient, TestRelayClient];

      // The 0.35 exchange starts before the iroh echo and stops only once the echo is done.
      let echoFinished = false;
      const exchange = (async () => {
        const deadline = Date.now() + ECHO_TIMEOUT_MS;
        let rounds = 0;
        while (!echoFinished && Date.now() < deadline && rounds < 1_000_000) {
          rounds++;
          for (const [from, to] of [[derp, ws], [ws, derp]] as const) {
            const text = `${from.kind}->${to.kind} #${rounds}`;
            await from.send(to.publicKey, new TextEncoder().encode(text));
            const got = await to.recv();
            assert.equal(new TextDecoder().decode(got.data), text);
            assert.deepEqual(got.src, from.publicKey);
          }
        }
        return { rounds, stoppedByEcho: echoFinished };
      })();
      // Awaited after the echo; a failure meanwhile must not count as unhandled.
      exchange.catch(() => {});
      let r: EchoResult;
      try {
        r = await echoThroughRelay(relay, nsA, nsB);
      } finally {
        echoFinished = true;
      }
      const ex = await exchange;
      logEcho("mixed (v2 + v1)", r, wires);
      console.log(`0.35 exchange: ${ex.rounds} round trips (derp <-> ws035) during the echo`);
      assert.ok(ex.stoppedByEcho && ex.rounds > 0, `exchange: ${JSON.stringify(ex)}`);
      assertRelayedEcho(r);
      assert.deepEqual(r.gauge, { "0.35": 2, "1.x": 2 });
      assert.deepEqual(wires.map((w) => w.negotiated), [["iroh-relay-v2"], ["iroh-relay-v1"]]);
      assert.ok(old.every((c) => !c.closed), "a 0.35 client was disconnected");
    } finally {
      for (const c of old) c.close();
      await Promise.all(old.map((c) => c.ended));
    }
  });
});

Deno.test("a real iroh 1.x client answers the relay's pings and keeps its connection", async () => {
  // Ping after 0 ms of silence, and the smallest jitter (the client draws it from one random byte): a ping about
  // every second instead of every 16-20 s. Everything else stays random.
  const random = (n: number) => n === 1 ? new Uint8Array(1) : crypto.getRandomValues(new Uint8Array(n));
  await withRelay(async (relay, port) => {
    const wire = new RelayWireObserver();
    await using ns = await Netns.create([wire.forward(port)]);
    await startPeer(ns, { mode: "accept-echo" });
    // A second relay Ping proves the first Pong matched: a pending ping either gets its pong or closes the client.
    const pingsAnswered = (frames: readonly { dir: string; type: number }[]) =>
      frames.filter((f) => f.dir === "down" && f.type === 9).length >= 2 &&
      frames.filter((f) => f.dir === "up" && f.type === 10).length >= 2;
    await wire.waitForFrames(pingsAnswered, 15_000);
    assert.equal(relay.core.metrics.c.disconnects, 0);
    assert.deepEqual(relay.core.clientsPerGeneration, { "0.35": 0, "1.x": 1 });
    assert.equal(wire.negotiated.length, 1, "the client reconnected");
    assert.ok(relay.core.metrics.c.otherPacketsRecv >= 2);
  }, { core: { pingAfterMs: 0, random } });
});
