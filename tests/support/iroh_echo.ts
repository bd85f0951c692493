/**
 * @module
 * Running real iroh 1.x endpoints (npm `@number0/iroh`, via
 * `iroh_peer.cjs`) against a relay, each in its own loopback-only network
 * namespace ({@link Netns}), and checking that their traffic crossed the
 * relay: the shared half of `tests/iroh_interop_test.ts` (relay in this
 * process) and `tests/edge_iroh_test.ts` (relay under `deno serve`).
 */

import assert from "node:assert/strict";
import type { RelayService } from "../../relay/mod.ts";
import { readVarint, WsStreamReader } from "./wire.ts";
import { type BridgeConnInfo, type ForwardSpec, type LineProcess, Netns } from "./netns.ts";

/** The Node program driving a real iroh endpoint. */
export const PEER_SCRIPT = new URL("./iroh_peer.cjs", import.meta.url).pathname;
/** Where the relay appears inside each namespace (the production port; the namespace is ours alone). */
export const RELAY_PORT_IN_NS = 3340;
/** The relay URL the real endpoints use; plain http, so the bridge sees the upgrade in clear text. */
export const RELAY_URL = `http://127.0.0.1:${RELAY_PORT_IN_NS}/`;
/** Application protocol of the echo. */
export const ALPN = "relay-interop/echo/0";
/** Echoed stream size, bytes: 1 MiB, sixteen times the largest relay frame. */
export const PAYLOAD_BYTES = 1 << 20;
/** Largest datagram content one relay frame carries, bytes (spec §2.3 `MAX_PACKET_SIZE`). */
export const MAX_PACKET_BYTES = 65536;
/** Bound on an endpoint going online, ms: it needs one `/ping` answer (probes start at 200 ms). */
export const ONLINE_TIMEOUT_MS = 20_000;
/** Bound on the whole echo, ms; it takes about a second on a quiet machine. */
export const ECHO_TIMEOUT_MS = 30_000;
/** Relay frame types a 1.x relay may send (spec §2.3); Health is v1-only, Status v2-only. */
export const R2C_TYPES = { 1: [0, 2, 3, 6, 7, 8, 9, 10, 11, 12], 2: [0, 2, 3, 6, 7, 8, 9, 10, 12, 13] } as const;

/** One JSON report line of `iroh_peer.cjs`. */
export interface PeerEvent {
  event: string;
  [field: string]: unknown;
}

/** A path of a connection as `iroh_peer.cjs` reports it (`PathSnapshot`). */
export interface PathReport {
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
export class RelayWireObserver {
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
  readonly #streams = new Map<string, { head: Uint8Array | null; ws: WsStreamReader | null }>();

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
        s.ws = new WsStreamReader(2 << 20);
      }
      rest = all.subarray(end + 4);
    }
    if (!s.ws) return;
    try {
      s.ws.push(rest);
      for (let ev = s.ws.next(); ev !== null; ev = s.ws.next()) {
        if (ev.kind !== "message" || !ev.binary) continue;
        const type = readVarint(ev.data).value;
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

/**
 * Waits for the next report `event` of a peer.
 * @throws {Error} if the peer reports `error` first, exits, or `timeoutMs` passes
 */
export async function nextEvent(p: LineProcess, event: string, timeoutMs: number): Promise<PeerEvent> {
  const line = await p.nextLine({
    timeoutMs,
    match: (l) => l.startsWith("{") && [event, "error"].includes((JSON.parse(l) as PeerEvent).event),
  });
  const ev = JSON.parse(line) as PeerEvent;
  if (ev.event === "error") throw new Error(`Peer reported an error: ${ev.message}\n${p.diagnostics()}`);
  return ev;
}

/** Starts a real endpoint in `ns` and waits until it is online; returns it and its id. */
export async function startPeer(
  ns: Netns,
  config: Record<string, unknown>,
): Promise<{ peer: LineProcess; id: string }> {
  const peer = ns.spawn("node", [
    PEER_SCRIPT,
    JSON.stringify({ relayUrl: RELAY_URL, alpn: ALPN, onlineTimeoutMs: ONLINE_TIMEOUT_MS, ...config }),
  ]);
  const bound = await nextEvent(peer, "bound", ONLINE_TIMEOUT_MS);
  await nextEvent(peer, "online", ONLINE_TIMEOUT_MS);
  return { peer, id: String(bound.id) };
}

/** What {@link echoThroughRelay} saw. */
export interface EchoResult {
  /** The dialer's `done` report. */
  done: PeerEvent;
  /** The acceptor's `echoed` report. */
  echoed: PeerEvent;
  /** Relay counters: growth of `bytesSent` and `sendPacketsSent` over the echo (in-process relays only). */
  relayBytesSent: number;
  relayPacketsSent: number;
  /** `core.clientsPerGeneration` while both endpoints were connected (in-process relays only). */
  gauge: Readonly<Record<"0.35" | "1.x", number>>;
  /** Wall time from spawning the dialer to its `done`, ms. */
  wallMs: number;
}

/**
 * Runs the echo between an accepting endpoint in `nsA` and a dialing one in
 * `nsB`, both online before any datagram is counted; closes both cleanly.
 */
export async function echoThroughRelay(relay: RelayService | null, nsA: Netns, nsB: Netns): Promise<EchoResult> {
  const { peer: acceptor, id } = await startPeer(nsA, { mode: "accept-echo" });
  const zero = { bytesSent: 0, sendPacketsSent: 0 };
  const before = relay ? { ...relay.core.metrics.c } : zero;
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
  const gauge = relay ? { ...relay.core.clientsPerGeneration } : { "0.35": 0, "1.x": 0 };
  const after = relay ? relay.core.metrics.c : zero;
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

/**
 * Asserts the payload came back intact and only ever used the relay path;
 * with `relaySide`, also that the relay's own counters saw it.
 */
export function assertRelayedEcho(r: EchoResult, relaySide = true): void {
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
  if (!relaySide) return;
  // Relay side: both directions were forwarded, in frames of at most 64 KiB each.
  assert.ok(r.relayBytesSent >= 2 * PAYLOAD_BYTES, `relay bytesSent grew by ${r.relayBytesSent}`);
  assert.ok(
    r.relayPacketsSent >= (2 * PAYLOAD_BYTES) / MAX_PACKET_BYTES,
    `relay sendPacketsSent grew by ${r.relayPacketsSent}`,
  );
}

/** Test output: what the echo cost, and what each bridge saw of the relay protocol. */
export function logEcho(label: string, r: EchoResult, wires: readonly RelayWireObserver[]): void {
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
