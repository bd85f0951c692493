/**
 * @module
 * One relay connection, whatever carried it: handshake, then a per-client
 * actor with bounded queues and a batching writer.
 *
 * Flow:
 * - 1.x: send ServerChallenge, read ClientAuth, verify, ask access, send
 *   ServerConfirmsAuth (or ServerDeniesAuth and close), register.
 * - 0.35: read ClientInfo, verify, ask access (deny → Health "not
 *   authenticated" and close), check version 3, register. Nothing is sent on
 *   success.
 * - Then every client frame is handled synchronously: datagrams are routed to
 *   the receiver's queue, pings answered, pongs matched.
 *
 * Queues (spec §4 "Queues and priority"): packets and control messages, 512
 * each; a full queue drops the new message (tail drop) so a receiver that
 * stops reading never blocks its senders or grows memory. The writer takes
 * control messages first, so pongs are prompt even behind a data backlog,
 * and writes everything queued in one transport call.
 *
 * Timers are not per client: the core's sweeper calls {@link Client.checkTimers}.
 *
 * The transport supplies a {@link FrameSender} and calls
 * {@link Client.onFrame}; this file never touches a socket. Port of
 * `server/client.rs @v1.0.3` and `@v0.35.0`.
 */

import type { Generation, WireMsg } from "./generation.ts";
import { type DerpMsg } from "./codec_derp.ts";
import { type V1Msg } from "./codec_v1.ts";
import { DERP_PROTOCOL_VERSION, newChallenge, verifyClientAuth, verifyClientInfo } from "./handshake.ts";
import { keyId, keyShort } from "./public_key.ts";
import { ByteBucket } from "./rate_limit.ts";
import type { RelayCore } from "./relay_core.ts";

/** Depth of each per-client queue, in messages (`PER_CLIENT_SEND_QUEUE_DEPTH`). */
export const QUEUE_DEPTH = 512;
/** Most messages written in one transport call. */
export const MAX_BATCH = 256;
/** A frame write must finish within this, in ms (`SERVER_WRITE_TIMEOUT`). */
export const WRITE_TIMEOUT_MS = 2_000;
/** Silence after which the server pings: 15 s + 1–5 s of jitter, in ms. */
export const PING_AFTER_MS = 15_000;
/** Longest wait for a pong, in ms (0.35 always; 1.x before any RTT is known). */
export const PONG_TIMEOUT_MS = 5_000;
/** Shortest 1.x pong wait, in ms (`clamp(3 × RTT, 500 ms, 5 s)`). */
export const PONG_TIMEOUT_MIN_MS = 500;
/** Time a 0.35 client has to send ClientInfo after the 101, in ms. */
export const CLIENT_INFO_TIMEOUT_MS = 10_000;

/** What a transport provides to carry a client's frames. */
export interface FrameSender {
  /**
   * Writes `batch` in order, framed for the connection, in as few writes as
   * possible. Resolves when written; rejects if the connection is gone.
   */
  send(batch: readonly WireMsg[], gen: Generation): Promise<void>;
  /** Closes the connection; pending writes may be abandoned. */
  close(): void;
}

/** Connection facts a transport passes to {@link RelayCore.accept}. */
export interface ConnInfo {
  /** Frame vocabulary negotiated in the upgrade. */
  gen: Generation;
  /** How the frames travel: `derp` stream or `websocket` messages. */
  framing: "derp" | "websocket";
  /** When the TCP connection was accepted (core clock, ms). */
  acceptedAt: number;
  /** Token from `Authorization: Bearer` or `?token=`, for `shared_token`. */
  token?: string;
  /** Peer address, for logs. */
  remote: string;
}

/** A FIFO with a fixed bound whose storage shrinks back to nothing when drained. */
export class BoundedQueue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;
  readonly #cap: number;

  /** @param capacity most items held */
  constructor(capacity: number) {
    this.#cap = capacity;
  }

  /** Items queued. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** True if a push would fail. */
  get full(): boolean {
    return this.length >= this.#cap;
  }

  /** Appends `item`; false (and nothing queued) when full. */
  push(item: T): boolean {
    if (this.length >= this.#cap) return false;
    this.#items.push(item);
    return true;
  }

  /** Removes and returns the oldest item. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    }
    return item;
  }

  /** Drops everything. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
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

  readonly #core: RelayCore;
  readonly #sender: FrameSender;
  readonly #packets = new BoundedQueue<WireMsg>(QUEUE_DEPTH);
  readonly #control = new BoundedQueue<WireMsg>(QUEUE_DEPTH);
  #writing = false;
  #closeWhenDrained = false;
  #closeReason = "";
  #challenge: Uint8Array | null = null;
  #bucket: ByteBucket | null = null;

  // Timer state, read by checkTimers (owned by the core's sweeper).
  /** Deadline to finish the handshake (core clock, ms). */
  establishDeadline: number;
  /** When the current write started, or 0 when idle. */
  writeStartedAt = 0;
  /** Last time a frame arrived. */
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
    const now = core.now();
    this.lastRecvAt = now;
    this.establishDeadline = Math.min(
      info.acceptedAt + core.opts.establishTimeoutMs,
      this.gen.name === "0.35" ? now + CLIENT_INFO_TIMEOUT_MS : Infinity,
    );
    this.pingAfter = core.opts.pingAfterMs + Math.floor(core.random(1)[0]! / 256 * 4000) + 1000;
    const rx = core.opts.clientRx;
    if (rx) {
      const burst = rx.maxBurstBytes ??
        (this.gen.name === "0.35" ? rx.bytesPerSecond : Math.max(1, rx.bytesPerSecond / 10));
      this.#bucket = new ByteBucket(rx.bytesPerSecond, burst, now);
    }
  }

  /** Starts the handshake: 1.x clients get their challenge now. */
  start(): void {
    if (this.gen.name === "1.x") {
      const msg = newChallenge(this.#core.random) as V1Msg & { type: "ServerChallenge" };
      this.#challenge = msg.challenge;
      this.#enqueue(this.#control, msg);
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
    if (this.state === "closed" || this.#closeWhenDrained) return;
    if (this.state === "handshake") return this.#handshake(type, payload);
    const now = this.#core.now();
    if (this.#bucket !== null) {
      const wait = this.#bucket.delayFor(wireLen, now);
      if (wait > 0) {
        this.#core.metrics.c.connsRxRatelimited++;
        this.#core.metrics.c.bytesRxRatelimited += wireLen;
        return this.#core.sleep(wait).then(() => this.#frame(type, payload, wireLen));
      }
    }
    this.#frame(type, payload, wireLen);
  }

  #frame(type: number, payload: Uint8Array, wireLen: number): void {
    if (this.state === "closed") return;
    const core = this.#core;
    const now = core.now();
    this.#bucket?.take(wireLen, now);
    this.lastRecvAt = now;
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
        core.route(this, ev.dstKey, ev.ecn, ev.segmentSize, ev.contents);
        return;
      case "ping":
        c.gotPing++;
        c.otherPacketsRecv++;
        if (this.#enqueue(this.#control, this.gen.pong(ev.data.slice()))) c.sentPong++;
        return;
      case "pong":
        c.otherPacketsRecv++;
        if (this.#pingData !== null && equalBytes(this.#pingData, ev.data)) {
          this.rttMs = now - this.#pingSentAt;
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
    const core = this.#core;
    let msg: WireMsg;
    try {
      msg = this.gen.decodeAuth(type, payload);
    } catch (e) {
      core.metrics.c.authFailures++;
      this.close(`handshake: ${(e as Error).message}`);
      return;
    }
    let key: Uint8Array;
    if (this.gen.name === "0.35") {
      const r = await verifyClientInfo(msg as DerpMsg, core.verify);
      if (this.closed) return;
      if (!r.ok) {
        core.metrics.c.authFailures++;
        this.close(`handshake: ${r.reason}`);
        return;
      }
      if (!await core.allows(r.key, this.info.token)) {
        if (this.closed) return;
        core.metrics.c.authFailures++;
        this.#refuse({ type: "Health", problem: "not authenticated" }, "access denied");
        return;
      }
      if (r.version !== DERP_PROTOCOL_VERSION) {
        core.metrics.c.authFailures++;
        this.close(`handshake: unsupported ClientInfo version ${r.version}`);
        return;
      }
      key = r.key;
    } else {
      const r = await verifyClientAuth(msg as V1Msg, this.#challenge!, core.verify);
      if (this.closed) return;
      if (!r.ok) {
        core.metrics.c.authFailures++;
        // A key that is not a curve point is a decode error upstream: no reply.
        if (r.reply === "deny" && core.isCurvePoint((msg as V1Msg & { type: "ClientAuth" }).publicKey)) {
          this.#refuse({ type: "ServerDeniesAuth", reason: r.reason }, `handshake: ${r.reason}`);
        } else {
          this.close(`handshake: ${r.reason}`);
        }
        return;
      }
      if (!await core.allows(r.key, this.info.token)) {
        if (this.closed) return;
        core.metrics.c.authFailures++;
        this.#refuse({ type: "ServerDeniesAuth", reason: "not authorized" }, "access denied");
        return;
      }
      if (this.closed) return;
      this.#enqueue(this.#control, { type: "ServerConfirmsAuth" });
      key = r.key;
    }
    this.key = key;
    this.id = keyId(key);
    this.#challenge = null;
    this.lastRecvAt = core.now();
    core.register(this);
  }

  /** Sends a last message, then closes once it is written. */
  #refuse(msg: WireMsg, reason: string): void {
    this.#core.log.info(`${this.label}: refused: ${reason}`);
    this.#enqueue(this.#control, msg);
    this.#closeWhenDrained = true;
    this.#closeReason = reason;
  }

  /** Called by the registry when a newer connection with the same key took over (1.x). */
  demote(status: WireMsg | null): void {
    if (this.state !== "active") return;
    this.state = "inactive";
    this.#packets.clear();
    if (status) this.#enqueue(this.#control, status);
  }

  /** Called by the registry when this connection becomes the active one again. */
  promote(status: WireMsg | null): void {
    if (this.state !== "inactive") return;
    this.state = "active";
    if (status) this.#enqueue(this.#control, status);
  }

  /** True if a datagram would be dropped for lack of room. */
  get packetQueueFull(): boolean {
    return this.#packets.full;
  }

  /** Queues a datagram for this client; false if it was dropped. */
  enqueuePacket(msg: WireMsg): boolean {
    return this.state === "active" && this.#enqueue(this.#packets, msg);
  }

  /** Queues a control message (EndpointGone, Status, …); false if dropped. */
  enqueueControl(msg: WireMsg): boolean {
    if (this.#enqueue(this.#control, msg)) return true;
    this.#core.metrics.c.otherPacketsDropped++;
    return false;
  }

  #enqueue(q: BoundedQueue<WireMsg>, msg: WireMsg): boolean {
    if (this.state === "closed" || !q.push(msg)) return false;
    if (!this.#writing) {
      this.#writing = true;
      // Deferred so that everything one read chunk routes here goes out in one batch.
      queueMicrotask(() => this.#drain());
    }
    return true;
  }

  async #drain(): Promise<void> {
    const c = this.#core.metrics.c;
    try {
      while (this.state !== "closed") {
        const batch: WireMsg[] = [];
        let datagrams = 0;
        let bytes = 0;
        while (batch.length < MAX_BATCH && this.#control.length > 0) batch.push(this.#control.shift()!);
        const controls = batch.length;
        while (batch.length < MAX_BATCH && this.#packets.length > 0) {
          const m = this.#packets.shift()!;
          batch.push(m);
          datagrams++;
          bytes += datagramBytes(m);
        }
        if (batch.length === 0) break;
        this.writeStartedAt = this.#core.now();
        await this.#sender.send(batch, this.gen);
        this.writeStartedAt = 0;
        c.otherPacketsSent += controls;
        c.sendPacketsSent += datagrams;
        c.bytesSent += bytes;
      }
    } catch (e) {
      this.writeStartedAt = 0;
      this.#writing = false;
      this.close(`write failed: ${(e as Error).message}`);
      return;
    }
    this.#writing = false;
    if (this.#closeWhenDrained) this.close(this.#closeReason);
  }

  /**
   * Runs this client's timers (called by the core's sweeper): establish
   * deadline, stuck writes, server pings after silence, missing pongs.
   */
  checkTimers(now: number): void {
    if (this.state === "closed") return;
    if (this.state === "handshake") {
      if (now >= this.establishDeadline) this.close("establish timeout");
      return;
    }
    if (this.writeStartedAt !== 0 && now - this.writeStartedAt > WRITE_TIMEOUT_MS) {
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
        const timeout = this.gen.name === "0.35" || this.rttMs === 0
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
    this.#packets.clear();
    this.#control.clear();
    this.#sender.close();
    this.#core.closed(this, wasRegistered, reason);
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Datagram payload bytes of a queued message (for byte counters). */
function datagramBytes(m: WireMsg): number {
  switch (m.type) {
    case "RecvPacket":
      return m.packet.length;
    case "RelayToClientDatagram":
    case "RelayToClientDatagramBatch":
      return m.contents.length;
    default:
      return 0;
  }
}
