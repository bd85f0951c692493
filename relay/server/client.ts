/**
 * @module
 * One relay connection, whatever carried it: the per-client actor. It ties
 * together the handshake (`client_handshake.ts`), the outbound queues and
 * writer (`client_writer.ts`) and the datagram fast path
 * (`client_forward.ts`), and owns what is left: the connection's state,
 * frame dispatch after the handshake (datagrams routed, pings answered,
 * pongs matched), the receive rate limit, duplicate-key demotion and the
 * timers.
 *
 * What differs between 0.35 and 1.x is asked of the connection's
 * {@link Generation}, never decided here by its name.
 *
 * Timers are not per client: the core's sweeper calls {@link Client.checkTimers}.
 *
 * The transport supplies a {@link FrameSender} and calls
 * {@link Client.onFrame}; this file never touches a socket. Port of
 * `server/client.rs @v1.0.3` and `@v0.35.0`.
 */

import type { KeyEntry } from "./clients.ts";
import { DatagramForwarder } from "./client_forward.ts";
import { authenticate, openingChallenge } from "./client_handshake.ts";
import { ClientWriter } from "./client_writer.ts";
import type { Framing } from "../proto/framing.ts";
import type { Generation, WireMsg } from "../proto/generation.ts";
import { keyId, keyShort } from "../proto/public_key.ts";
import { ByteBucket } from "./rate_limit.ts";
import type { RelayCore } from "./relay_core.ts";

/** Silence after which the server pings: 15 s + 1–5 s of jitter, in ms. */
export const PING_AFTER_MS = 15_000;
/** Longest wait for a pong, in ms (always where the generation has a fixed wait; otherwise before any RTT is known). */
export const PONG_TIMEOUT_MS = 5_000;
/** Shortest RTT-based pong wait, in ms (`clamp(3 × RTT, 500 ms, 5 s)`). */
export const PONG_TIMEOUT_MIN_MS = 500;

/** What a transport provides to carry a client's frames. */
export interface FrameSender {
  /** How frames are delimited on this connection; the client encodes with it. */
  readonly framing: Framing;
  /**
   * Writes whole frames. The client does not touch `bytes` until the
   * promise settles. Rejects if the connection is gone.
   */
  write(bytes: Uint8Array): Promise<void>;
  /** Closes the connection; pending writes may be abandoned. */
  close(): void;
}

/** Connection facts a transport passes to {@link RelayCore.accept}. */
export interface ConnInfo {
  /** Frame vocabulary negotiated in the upgrade. */
  gen: Generation;
  /** How the frames travel: `derp` stream or `websocket` messages (for logs and metrics). */
  framing: "derp" | "websocket";
  /** When the TCP connection was accepted (core clock, ms). */
  acceptedAt: number;
  /** Token from `Authorization: Bearer` or `?token=`, for `shared_token`. */
  token?: string;
  /** Peer address, for logs. */
  remote: string;
}

/** Lifecycle of a connection. */
export type ClientState = "handshake" | "active" | "inactive" | "closed";

let nextConnId = 1;

/** One relay connection; see the module doc. */
export class Client {
  /** Unique per process, for logs and for unregistering the right connection. */
  readonly connId: number = nextConnId++;
  /** Negotiated vocabulary. */
  readonly gen: Generation;
  /** Connection facts. */
  readonly info: ConnInfo;
  /** Authenticated key; empty until the handshake succeeds. */
  key: Uint8Array = new Uint8Array(0);
  /** {@link keyId} of {@link key}. */
  id = "";
  /** Lifecycle state. */
  state: ClientState = "handshake";
  /** The outbound queues and their writer. */
  readonly writer: ClientWriter;
  /** The datagram fast path (see `client_forward.ts`). */
  readonly forwarder: DatagramForwarder;
  /** Receive rate limit (`clientRx`), or null when unlimited: limited clients take the general path. */
  readonly rxBucket: ByteBucket | null = null;

  readonly #core: RelayCore;
  readonly #sender: FrameSender;
  /** Routing cache (owned by the core's `route`): last destination key ({@link keyWords}) and its entry. */
  lastDst: Uint32Array | null = null;
  /** Entry for {@link lastDst}; checked for `gone` before use. */
  lastEntry: KeyEntry | null = null;
  /** Whether {@link lastDst} was recorded in this key's `sentTo`. */
  lastRecorded = false;
  #view: DataView | null = null;

  /** A DataView over `buf`'s whole ArrayBuffer, reused while the transport reuses its read buffer. */
  viewOf(buf: Uint8Array): DataView {
    const v = this.#view;
    if (v !== null && v.buffer === buf.buffer) return v;
    return (this.#view = new DataView(buf.buffer));
  }
  #challenge: Uint8Array | null = null;

  // Timer state, read by checkTimers (owned by the core's sweeper).
  /** Deadline to finish the handshake (core clock, ms). */
  establishDeadline: number;
  /** Last time a frame arrived, to sweeper-tick precision (never later than the truth). */
  lastRecvAt: number;
  /** Silence after which to ping (jittered once per connection). */
  readonly pingAfter: number;
  /** Outstanding server ping payload, or null. */
  #pingData: Uint8Array | null = null;
  #pingSentAt = 0;
  #pingDeadline = 0;
  /** Last measured round trip, ms, or 0. */
  rttMs = 0;

  /**
   * @param core the relay this connection belongs to
   * @param sender transport write side
   * @param info negotiated generation and connection facts
   */
  constructor(core: RelayCore, sender: FrameSender, info: ConnInfo) {
    this.#core = core;
    this.#sender = sender;
    this.info = info;
    this.gen = info.gen;
    this.writer = new ClientWriter(this, core, sender);
    this.forwarder = new DatagramForwarder(this, core, info.gen, sender.framing);
    const now = core.now();
    this.lastRecvAt = now;
    this.establishDeadline = Math.min(
      info.acceptedAt + core.opts.establishTimeoutMs,
      now + this.gen.authTimeoutMs,
    );
    this.pingAfter = core.opts.pingAfterMs + Math.floor(core.random(1)[0]! / 256 * 4000) + 1000;
    const rx = core.opts.clientRx;
    if (rx) {
      const burst = rx.maxBurstBytes ?? this.gen.rxBurstBytes(rx.bytesPerSecond);
      this.rxBucket = new ByteBucket(rx.bytesPerSecond, burst, now);
    }
  }

  /** Starts the handshake: clients of a challenge handshake get their challenge now. */
  start(): void {
    const msg = openingChallenge(this.#core, this.gen);
    if (msg !== null) {
      this.#challenge = msg.challenge;
      this.writer.enqueueMsg(msg);
    }
  }

  /** True once closed (a getter, so checks after an await are not narrowed away). */
  get closed(): boolean {
    return this.state === "closed";
  }

  /** Label for logs: connection id and key prefix. */
  get label(): string {
    return `conn ${this.connId}${
      this.key.length ? ` ${keyShort(this.key)}` : ""
    } (${this.gen.name} ${this.info.framing})`;
  }

  /**
   * Handles one frame from the client. Returns a promise when the transport
   * must wait before delivering the next frame (handshake verification, rate
   * limit); `payload` must stay valid until then. Never throws: a malformed
   * frame closes this connection only.
   */
  onFrame(type: number, payload: Uint8Array, wireLen: number): void | Promise<void> {
    // A refused connection only waits for its last message to be written: read nothing more.
    if (this.state === "closed" || this.writer.closing) return;
    if (this.state === "handshake") return this.#handshake(type, payload);
    if (this.rxBucket !== null) {
      const wait = this.rxBucket.delayFor(wireLen, this.#core.now());
      if (wait > 0) {
        this.#core.metrics.c.connsRxRatelimited++;
        this.#core.metrics.c.bytesRxRatelimited += wireLen;
        return this.#core.sleep(wait).then(() => this.#frame(type, payload, wireLen));
      }
    }
    this.#frame(type, payload, wireLen);
  }

  /** The datagram fast path; see {@link DatagramForwarder.onDatagramFrame}. */
  onDatagramFrame(type: number, buf: Uint8Array, start: number, end: number): boolean {
    return this.forwarder.onDatagramFrame(type, buf, start, end);
  }

  /** Forwards the pending run; see {@link DatagramForwarder.flushRun}. */
  flushRun(): void {
    this.forwarder.flushRun();
  }

  #frame(type: number, payload: Uint8Array, wireLen: number): void {
    if (this.state === "closed") return;
    const core = this.#core;
    if (this.rxBucket !== null) this.rxBucket.take(wireLen, core.now());
    this.lastRecvAt = core.tickNow;
    let ev;
    try {
      ev = this.gen.inbound(type, payload);
    } catch (e) {
      this.close(`protocol error: ${(e as Error).message}`);
      return;
    }
    const c = core.metrics.c;
    switch (ev.kind) {
      case "datagram":
        core.route(this, ev.dstKey, 0, ev.ecn, ev.segmentSize, ev.contents, 0, ev.contents.length);
        return;
      case "ping":
        c.gotPing++;
        c.otherPacketsRecv++;
        if (this.writer.enqueueMsg(this.gen.pong(ev.data))) {
          c.sentPong++;
        } else {
          // The peer pings faster than it reads the pongs: drop it rather than keep parsing its flood.
          c.otherPacketsDropped++;
          this.close("control queue full: pings arrive faster than the peer reads the pongs");
        }
        return;
      case "pong":
        c.otherPacketsRecv++;
        if (this.#pingData !== null && equalBytes(this.#pingData, ev.data)) {
          this.rttMs = core.now() - this.#pingSentAt;
          this.#pingData = null;
          this.#pingDeadline = 0;
        }
        return;
      case "ignore":
        c.unknownFrames++;
        return;
      case "close":
        this.close(ev.reason);
        return;
    }
  }

  async #handshake(type: number, payload: Uint8Array): Promise<void> {
    const key = await authenticate(this.#core, this, this.#challenge, type, payload);
    if (key === null) return;
    this.key = key;
    this.id = keyId(key);
    this.#challenge = null;
    this.lastRecvAt = this.#core.now();
    this.#core.register(this);
  }

  /** Sends a last message, then closes once it is written (a refused handshake). */
  refuse(msg: WireMsg, reason: string): void {
    // A peer can be refused as often as it connects: limited.
    this.#core.peerLog.info("refused", () => `${this.label}: refused: ${reason}`);
    this.writer.sendLast(msg, reason);
  }

  /** Called by the registry when a newer connection with the same key took over (1.x). */
  demote(status: WireMsg | null): void {
    if (this.state !== "active") return;
    this.state = "inactive";
    this.writer.dropPackets();
    if (status) this.writer.enqueueMsg(status);
  }

  /** Called by the registry when this connection becomes the active one again. */
  promote(status: WireMsg | null): void {
    if (this.state !== "inactive") return;
    this.state = "active";
    if (status) this.writer.enqueueMsg(status);
  }

  /** Queues a datagram; see {@link ClientWriter.enqueueDatagram}. */
  enqueueDatagram(
    srcKey: Uint8Array,
    ecn: number,
    segmentSize: number,
    src: Uint8Array,
    start: number,
    end: number,
  ): boolean {
    return this.writer.enqueueDatagram(srcKey, ecn, segmentSize, src, start, end);
  }

  /** Queues a control message (EndpointGone, Status, …); false if dropped. */
  enqueueControl(msg: WireMsg): boolean {
    if (this.writer.enqueueMsg(msg)) return true;
    this.#core.metrics.c.otherPacketsDropped++;
    return false;
  }

  /**
   * Runs this client's timers (called by the core's sweeper): establish
   * deadline, stuck writes, server pings after silence, missing pongs.
   */
  checkTimers(now: number): void {
    if (this.state === "closed") return;
    this.writer.sweep();
    if (this.state === "handshake") {
      if (now >= this.establishDeadline) this.close("establish timeout");
      return;
    }
    if (this.writer.writeTimedOut(now)) {
      this.close("write timeout");
      return;
    }
    if (this.#pingData !== null) {
      if (now >= this.#pingDeadline) this.close("ping timeout: no pong");
      return;
    }
    if (now - this.lastRecvAt >= this.pingAfter) {
      const data = this.#core.random(8);
      if (this.enqueueControl(this.gen.ping(data))) {
        this.#pingData = data;
        this.#pingSentAt = now;
        const timeout = !this.gen.pongTimeoutFromRtt || this.rttMs === 0
          ? PONG_TIMEOUT_MS
          : Math.min(PONG_TIMEOUT_MS, Math.max(PONG_TIMEOUT_MIN_MS, 3 * this.rttMs));
        this.#pingDeadline = now + timeout;
      }
    }
  }

  /** Closes the connection and leaves the registry. Idempotent. */
  close(reason: string): void {
    if (this.state === "closed") return;
    const wasRegistered = this.state !== "handshake";
    this.state = "closed";
    this.writer.clear();
    this.#sender.close();
    this.#core.closed(this, wasRegistered, reason);
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
