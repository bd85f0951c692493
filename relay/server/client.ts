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
 * stops reading never blocks its senders or grows memory. Frames are encoded
 * into the queue's byte buffer as they are queued (one copy of a forwarded
 * datagram, from the sender's read buffer to here, and no per-packet
 * objects); the writer hands the whole buffer to the transport in one write,
 * control frames first so pongs are prompt even behind a data backlog, while
 * new frames collect in a second buffer.
 *
 * Timers are not per client: the core's sweeper calls {@link Client.checkTimers}.
 *
 * The transport supplies a {@link FrameSender} and calls
 * {@link Client.onFrame}; this file never touches a socket. Port of
 * `server/client.rs @v1.0.3` and `@v0.35.0`.
 */

import type { KeyEntry } from "./clients.ts";
import { DERP_HEADER_LEN, type DerpMsg } from "../proto/codec_derp.ts";
import { type V1Msg } from "../proto/codec_v1.ts";
import { DerpFrame, KEY_LEN, MAX_PACKET_SIZE, V1Frame } from "../proto/frame_type.ts";
import { DERP_STREAM, type Framing } from "../proto/framing.ts";
import type { Generation, WireMsg } from "../proto/generation.ts";
import { DERP_PROTOCOL_VERSION, newChallenge, verifyClientAuth, verifyClientInfo } from "../proto/handshake.ts";
import { keyId, keyShort, sameKeyAt } from "../proto/public_key.ts";
import { ByteBucket } from "./rate_limit.ts";
import type { RelayCore } from "./relay_core.ts";

/** Depth of each per-client queue, in frames (`PER_CLIENT_SEND_QUEUE_DEPTH`). */
export const QUEUE_DEPTH = 512;
/** Most bytes waiting in a queue before further datagrams are dropped. */
export const QUEUE_MAX_BYTES = 2 * 1024 * 1024;
/** Most bytes of control messages (pongs, EndpointGone, Status…) waiting before further ones are dropped. */
export const CONTROL_QUEUE_MAX_BYTES = 64 * 1024;
/**
 * Write buffers up to this size are kept for reuse while a client is busy
 * (a full queue plus one largest frame, so a busy client never reallocates);
 * the sweeper drops them once the client goes idle.
 */
const SPARE_MAX_BYTES = QUEUE_MAX_BYTES + 128 * 1024;
/** Smallest write buffer allocated, bytes. */
const BUFFER_MIN_BYTES = 4 * 1024;
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

/**
 * Frames waiting to be written, already encoded, plus what they count for.
 * The storage is dropped when idle, so an idle client holds no buffer.
 */
class OutQueue {
  /** Encoded frames in `buf[0..len]`. */
  buf: Uint8Array | null = null;
  len = 0;
  /** Frames in the buffer (the queue depth). */
  frames = 0;
  /** Datagram payload bytes in the buffer (for `bytes_sent`). */
  payloadBytes = 0;
  /** A buffer that finished writing, kept for reuse. */
  spare: Uint8Array | null = null;
  /** Size of the last buffer written: a busy client needs about as much again. */
  #hint = 0;

  /** Reserves `n` bytes at the end and returns their offset. */
  reserve(n: number): number {
    const need = this.len + n;
    let buf = this.buf;
    if (buf === null) {
      // Allocating the previous write's size up front avoids growing by doubling (one
      // zeroed allocation and one copy per step) on every write of a steady flow.
      buf = this.spare !== null && this.spare.length >= need
        ? this.spare
        : new Uint8Array(Math.max(need, this.#hint, BUFFER_MIN_BYTES));
      this.spare = null;
      this.buf = buf;
    } else if (need > buf.length) {
      const grown = new Uint8Array(Math.max(need, buf.length * 2));
      grown.set(buf.subarray(0, this.len));
      this.buf = buf = grown;
    }
    const off = this.len;
    this.len = need;
    return off;
  }

  /** Takes the encoded bytes for writing and starts a fresh (or spare) buffer. */
  take(): Uint8Array {
    const out = this.buf!.subarray(0, this.len);
    this.#hint = this.buf!.length;
    this.buf = null;
    this.len = 0;
    this.frames = 0;
    this.payloadBytes = 0;
    return out;
  }

  /** Hands back a written buffer for reuse if it is small enough. */
  recycle(written: Uint8Array): void {
    if (written.buffer.byteLength <= SPARE_MAX_BYTES) this.spare = new Uint8Array(written.buffer);
  }

  /** Forgets the spare buffer and the size hint (the client went quiet). */
  idle(): void {
    this.spare = null;
    this.#hint = 0;
  }

  /** Drops all storage. */
  clear(): void {
    this.#hint = 0;
    this.buf = null;
    this.spare = null;
    this.len = 0;
    this.frames = 0;
    this.payloadBytes = 0;
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
  readonly #framing: Framing;
  readonly #packets = new OutQueue();
  readonly #control = new OutQueue();
  #writing = false;
  /** Packets were queued since the sweeper last looked (idle clients drop their buffers). */
  #busy = false;
  /** Routing cache (owned by the core's `route`): last destination key ({@link keyWords}) and its entry. */
  lastDst: Uint32Array | null = null;
  /** Entry for {@link lastDst}; checked for `gone` before use. */
  lastEntry: KeyEntry | null = null;
  /** Whether {@link lastDst} was recorded in this key's `sentTo`. */
  lastRecorded = false;
  #view: DataView | null = null;
  /** True when frames can be forwarded as runs: 0.35 over the derp stream, on both ends. */
  readonly #makesRuns: boolean;
  // The pending run (see flushRun); owned by onDatagramFrame, valid within one read chunk.
  #runBuf: Uint8Array | null = null;
  #runStart = 0;
  #runEnd = 0;
  #runCount = 0;
  #runBytes = 0;
  #runDst: Client | null = null;

  /** A DataView over `buf`'s whole ArrayBuffer, reused while the transport reuses its read buffer. */
  viewOf(buf: Uint8Array): DataView {
    const v = this.#view;
    if (v !== null && v.buffer === buf.buffer) return v;
    return (this.#view = new DataView(buf.buffer));
  }
  #closeWhenDrained = false;
  #closeReason = "";
  #challenge: Uint8Array | null = null;
  #bucket: ByteBucket | null = null;

  // Timer state, read by checkTimers (owned by the core's sweeper).
  /** Deadline to finish the handshake (core clock, ms). */
  establishDeadline: number;
  /** When the current write started, or 0 when idle. */
  writeStartedAt = 0;
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
    this.#framing = sender.framing;
    this.info = info;
    this.#makesRuns = info.gen.name === "0.35" && sender.framing === DERP_STREAM;
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
      this.#enqueueMsg(msg);
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
    if (this.#bucket !== null) {
      const wait = this.#bucket.delayFor(wireLen, this.#core.now());
      if (wait > 0) {
        this.#core.metrics.c.connsRxRatelimited++;
        this.#core.metrics.c.bytesRxRatelimited += wireLen;
        return this.#core.sleep(wait).then(() => this.#frame(type, payload, wireLen));
      }
    }
    this.#frame(type, payload, wireLen);
  }

  /**
   * The hot path for datagram frames: `buf[start..end]` is the payload of a
   * frame of `type`. Handles the common well-formed, unthrottled case without
   * building any object and returns true; returns false to have the caller
   * take the general {@link onFrame} path (which also reports errors).
   */
  onDatagramFrame(type: number, buf: Uint8Array, start: number, end: number): boolean {
    if (this.#bucket !== null || (this.state !== "active" && this.state !== "inactive") || this.#closeWhenDrained) {
      return false;
    }
    const len = end - start;
    if (len > MAX_PACKET_SIZE) return false;
    let ecn = 0;
    let seg = 0;
    let contents: number;
    if (this.gen.varintType) {
      if (type === V1Frame.ClientToRelayDatagram) {
        if (len < KEY_LEN + 1) return false;
        ecn = buf[start + KEY_LEN]! & 3;
        contents = start + KEY_LEN + 1;
      } else if (type === V1Frame.ClientToRelayDatagramBatch) {
        if (len < KEY_LEN + 3) return false;
        ecn = buf[start + KEY_LEN]! & 3;
        seg = (buf[start + KEY_LEN + 1]! << 8) | buf[start + KEY_LEN + 2]!;
        contents = start + KEY_LEN + 3;
      } else {
        return false;
      }
    } else {
      if (type !== DerpFrame.SendPacket || len < KEY_LEN) return false;
      // The sweeper's last tick time: a clock read per frame costs more than the datagram.
      this.lastRecvAt = this.#core.tickNow;
      const entry = this.lastEntry;
      if (
        this.#runBuf === buf && start - DERP_HEADER_LEN === this.#runEnd && entry !== null &&
        entry.active === this.#runDst && sameKeyAt(this.lastDst!, this.viewOf(buf), buf.byteOffset + start)
      ) {
        // Same peer, right after the pending run: forward it with the run (see flushRun).
        this.#runEnd = end;
        this.#runCount++;
        this.#runBytes += len - KEY_LEN;
        return true;
      }
      this.flushRun();
      const dst = this.#core.route(this, buf, start, 0, 0, buf, start + KEY_LEN, end);
      if (dst !== null && this.#makesRuns && dst.#makesRuns) {
        this.#runBuf = buf;
        this.#runEnd = end;
        this.#runStart = end;
        this.#runDst = dst;
      }
      return true;
    }
    this.lastRecvAt = this.#core.tickNow;
    this.#core.route(this, buf, start, ecn, seg, buf, contents, end);
    return true;
  }

  /**
   * Forwards the pending run of datagrams. A derp-stream sender's frames to a
   * derp-stream receiver are byte-for-byte the frames the receiver gets,
   * except the type (SendPacket → RecvPacket) and the key (destination →
   * source): consecutive frames to one peer are copied in one piece and
   * patched, instead of being encoded one by one. The transport calls this
   * when a chunk is done, before the read buffer is reused.
   */
  flushRun(): void {
    const dst = this.#runDst;
    if (dst === null) return;
    const count = this.#runCount;
    const buf = this.#runBuf!;
    if (count > 0) {
      const c = this.#core.metrics.c;
      c.sendPacketsRecv += count;
      c.bytesRecv += this.#runBytes;
      if (!dst.#enqueueDerpRun(this.key, buf, this.#runStart, this.#runEnd, count, this.#runBytes)) {
        // Not all of it fits: frame by frame, which tail-drops what does not.
        for (let p = this.#runStart; p < this.#runEnd;) {
          const len = ((buf[p + 1]! << 24) >>> 0) + (buf[p + 2]! << 16) + (buf[p + 3]! << 8) + buf[p + 4]!;
          const body = p + DERP_HEADER_LEN;
          if (!dst.enqueueDatagram(this.key, 0, 0, buf, body + KEY_LEN, body + len)) c.sendPacketsDropped++;
          p = body + len;
        }
      }
    }
    this.#runDst = null;
    this.#runBuf = null;
    this.#runCount = 0;
    this.#runBytes = 0;
  }

  /** Queues a run of SendPacket frames `buf[start..end]` as RecvPackets from `srcKey`; false if it does not fit whole. */
  #enqueueDerpRun(
    srcKey: Uint8Array,
    buf: Uint8Array,
    start: number,
    end: number,
    count: number,
    bytes: number,
  ): boolean {
    const q = this.#packets;
    const n = end - start;
    if (this.state !== "active" || q.frames + count > QUEUE_DEPTH || q.len + n > QUEUE_MAX_BYTES) return false;
    const off = q.reserve(n);
    const out = q.buf!;
    out.set(buf.subarray(start, end), off);
    for (let p = off, stop = off + n; p < stop;) {
      out[p] = DerpFrame.RecvPacket;
      out.set(srcKey, p + DERP_HEADER_LEN);
      p += DERP_HEADER_LEN + (((out[p + 1]! << 24) >>> 0) + (out[p + 2]! << 16) + (out[p + 3]! << 8) + out[p + 4]!);
    }
    q.frames += count;
    q.payloadBytes += bytes;
    this.#busy = true;
    this.#kick();
    return true;
  }

  #frame(type: number, payload: Uint8Array, wireLen: number): void {
    if (this.state === "closed") return;
    const core = this.#core;
    if (this.#bucket !== null) this.#bucket.take(wireLen, core.now());
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
        if (this.#enqueueMsg(this.gen.pong(ev.data))) {
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
      const allowed = await core.allows(r.key, this.info.token);
      // The establish deadline (or a shutdown) may have closed us while the hook was asked.
      if (this.closed) return;
      if (!allowed) {
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
      this.#enqueueMsg({ type: "ServerConfirmsAuth" });
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
    // A peer can be refused as often as it connects: limited.
    this.#core.peerLog.info("refused", () => `${this.label}: refused: ${reason}`);
    this.#enqueueMsg(msg);
    this.#closeWhenDrained = true;
    this.#closeReason = reason;
  }

  /** Called by the registry when a newer connection with the same key took over (1.x). */
  demote(status: WireMsg | null): void {
    if (this.state !== "active") return;
    this.state = "inactive";
    this.#packets.clear();
    if (status) this.#enqueueMsg(status);
  }

  /** Called by the registry when this connection becomes the active one again. */
  promote(status: WireMsg | null): void {
    if (this.state !== "inactive") return;
    this.state = "active";
    if (status) this.#enqueueMsg(status);
  }

  /**
   * Queues a datagram from `srcKey` whose contents are `src[start..end]`,
   * encoding it straight into the packet buffer. False if it was dropped:
   * not the active connection, queue full, or too large/empty for this
   * generation.
   */
  enqueueDatagram(
    srcKey: Uint8Array,
    ecn: number,
    segmentSize: number,
    src: Uint8Array,
    start: number,
    end: number,
  ): boolean {
    const q = this.#packets;
    const n = end - start;
    const gen = this.gen;
    if (this.state !== "active" || q.frames >= QUEUE_DEPTH || q.len >= QUEUE_MAX_BYTES) return false;
    if (!gen.datagramFits(n, segmentSize)) return false;
    const headerLen = gen.datagramHeaderLen(segmentSize);
    const payloadLen = headerLen + n;
    const framing = this.#framing;
    const off = q.reserve(framing.prefixLen(payloadLen) + payloadLen);
    const buf = q.buf!;
    const p = off + framing.writePrefix(buf, off, gen.datagramType(segmentSize), payloadLen);
    gen.writeDatagramHeader(buf, p, srcKey, ecn, segmentSize);
    buf.set(src.subarray(start, end), p + headerLen);
    q.frames++;
    q.payloadBytes += n;
    this.#busy = true;
    this.#kick();
    return true;
  }

  /** Queues a control message (EndpointGone, Status, …); false if dropped. */
  enqueueControl(msg: WireMsg): boolean {
    if (this.#enqueueMsg(msg)) return true;
    this.#core.metrics.c.otherPacketsDropped++;
    return false;
  }

  #enqueueMsg(msg: WireMsg): boolean {
    const q = this.#control;
    if (this.state === "closed" || q.frames >= QUEUE_DEPTH || q.len >= CONTROL_QUEUE_MAX_BYTES) return false;
    const gen = this.gen;
    const payloadLen = gen.payloadLen(msg);
    const framing = this.#framing;
    const off = q.reserve(framing.prefixLen(payloadLen) + payloadLen);
    const p = off + framing.writePrefix(q.buf!, off, gen.frameType(msg), payloadLen);
    gen.writePayload(msg, q.buf!, p);
    q.frames++;
    this.#kick();
    return true;
  }

  #kick(): void {
    if (!this.#writing) {
      this.#writing = true;
      // Deferred so that everything one read chunk routes here goes out in one write.
      queueMicrotask(() => this.#drain());
    }
  }

  async #drain(): Promise<void> {
    const c = this.#core.metrics.c;
    const ctl = this.#control;
    const pkt = this.#packets;
    try {
      while (this.state !== "closed" && (ctl.len > 0 || pkt.len > 0)) {
        // Control frames first (prompt pongs), then data, in one write when both wait.
        const controls = ctl.frames;
        const datagrams = pkt.frames;
        const bytes = pkt.payloadBytes;
        let out: Uint8Array;
        if (ctl.len > 0 && pkt.len > 0) {
          const a = ctl.take();
          const b = pkt.take();
          out = new Uint8Array(a.length + b.length);
          out.set(a);
          out.set(b, a.length);
          ctl.recycle(a);
          pkt.recycle(b);
        } else {
          out = ctl.len > 0 ? ctl.take() : pkt.take();
        }
        this.writeStartedAt = this.#core.now();
        await this.#sender.write(out);
        this.writeStartedAt = 0;
        (datagrams > 0 && controls === 0 ? pkt : ctl).recycle(out);
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
    if (!this.#busy && !this.#writing) {
      // Idle since the last tick: give the buffers back so idle clients stay small.
      this.#packets.idle();
      this.#control.idle();
    }
    this.#busy = false;
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
