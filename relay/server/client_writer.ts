/**
 * @module
 * A client's outbound side: its two bounded queues and the writer that
 * drains them into the transport.
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
 * The writer also keeps what the sweeper needs: when the current write
 * started (write timeout) and whether the queues were busy since the last
 * tick (idle clients give their buffers back).
 */

import type { Client, FrameSender } from "./client.ts";
import { DERP_HEADER_LEN } from "../proto/codec_derp.ts";
import { DerpFrame } from "../proto/frame_type.ts";
import type { Framing } from "../proto/framing.ts";
import type { Generation, WireMsg } from "../proto/generation.ts";
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
  /**
   * Buffers that finished writing, kept for reuse: two, because while one is
   * being written the next batch fills another. With one, every burst that
   * ended with an empty queue dropped a buffer and the next burst allocated a
   * fresh zeroed one (30% of batches in the throughput runs; `reserve` was
   * 10–12% of relay CPU). `idle()` still frees both when the client goes quiet.
   */
  spare: Uint8Array | null = null;
  spare2: Uint8Array | null = null;
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
      this.spare = this.spare2;
      this.spare2 = null;
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
    if (written.buffer.byteLength > SPARE_MAX_BYTES) return;
    const w = new Uint8Array(written.buffer);
    if (this.spare === null) this.spare = w;
    else this.spare2 = w;
  }

  /** Forgets the spare buffers and the size hint (the client went quiet). */
  idle(): void {
    this.spare = null;
    this.spare2 = null;
    this.#hint = 0;
  }

  /** Drops all storage. */
  clear(): void {
    this.#hint = 0;
    this.buf = null;
    this.spare = null;
    this.spare2 = null;
    this.len = 0;
    this.frames = 0;
    this.payloadBytes = 0;
  }
}

/** The packet and control queues of one {@link Client} and the loop writing them out. */
export class ClientWriter {
  readonly #client: Client;
  readonly #core: RelayCore;
  readonly #sender: FrameSender;
  readonly #framing: Framing;
  readonly #gen: Generation;
  readonly #packets = new OutQueue();
  readonly #control = new OutQueue();
  #writing = false;
  /** Packets were queued since the sweeper last looked (idle clients drop their buffers). */
  #busy = false;
  /** When the current write started (core clock, ms), or 0 when idle. */
  writeStartedAt = 0;
  /** A last message is queued and the connection closes once it is written: read nothing more. */
  closing = false;
  #closeReason = "";

  /**
   * @param client the connection whose state gates queuing and which is closed on write failure (its `gen` set)
   * @param core the relay (clock, metrics)
   * @param sender transport write side
   */
  constructor(client: Client, core: RelayCore, sender: FrameSender) {
    this.#client = client;
    this.#core = core;
    this.#sender = sender;
    this.#framing = sender.framing;
    this.#gen = client.gen;
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
    const gen = this.#gen;
    if (this.#client.state !== "active" || q.frames >= QUEUE_DEPTH || q.len >= QUEUE_MAX_BYTES) return false;
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

  /**
   * Queues a run of SendPacket frames `buf[start..end]` as RecvPackets from
   * `srcKey` (see `client_forward.ts`); false if it does not fit whole.
   */
  enqueueDerpRun(
    srcKey: Uint8Array,
    buf: Uint8Array,
    start: number,
    end: number,
    count: number,
    bytes: number,
  ): boolean {
    const q = this.#packets;
    const n = end - start;
    if (this.#client.state !== "active" || q.frames + count > QUEUE_DEPTH || q.len + n > QUEUE_MAX_BYTES) {
      return false;
    }
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

  /** Queues a control message in the connection's vocabulary; false if the control queue is full or closed. */
  enqueueMsg(msg: WireMsg): boolean {
    const q = this.#control;
    if (this.#client.state === "closed" || q.frames >= QUEUE_DEPTH || q.len >= CONTROL_QUEUE_MAX_BYTES) return false;
    const gen = this.#gen;
    const payloadLen = gen.payloadLen(msg);
    const framing = this.#framing;
    const off = q.reserve(framing.prefixLen(payloadLen) + payloadLen);
    const p = off + framing.writePrefix(q.buf!, off, gen.frameType(msg), payloadLen);
    gen.writePayload(msg, q.buf!, p);
    q.frames++;
    this.#kick();
    return true;
  }

  /** Queues a last message; the connection closes with `reason` once it is written. */
  sendLast(msg: WireMsg, reason: string): void {
    this.enqueueMsg(msg);
    this.closing = true;
    this.#closeReason = reason;
  }

  /** Drops the queued datagrams (the connection became inactive). */
  dropPackets(): void {
    this.#packets.clear();
  }

  /**
   * Sweeper tick: a writer that was idle since the last tick gives its
   * buffers back, so idle clients stay small.
   */
  sweep(): void {
    if (!this.#busy && !this.#writing) {
      this.#packets.idle();
      this.#control.idle();
    }
    this.#busy = false;
  }

  /** True if a write has been in progress longer than {@link WRITE_TIMEOUT_MS}. */
  writeTimedOut(now: number): boolean {
    return this.writeStartedAt !== 0 && now - this.writeStartedAt > WRITE_TIMEOUT_MS;
  }

  /** Drops all storage (the connection closed). */
  clear(): void {
    this.#packets.clear();
    this.#control.clear();
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
    const client = this.#client;
    try {
      while (client.state !== "closed" && (ctl.len > 0 || pkt.len > 0)) {
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
      client.close(`write failed: ${(e as Error).message}`);
      return;
    }
    this.#writing = false;
    if (this.closing) client.close(this.#closeReason);
  }
}
