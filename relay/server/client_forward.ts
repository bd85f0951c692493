/**
 * @module
 * The forwarding fast path of one client: datagram frames read straight from
 * the transport's read buffer and routed without building any object, and,
 * where the generation allows ({@link Generation.makesRuns}) and both ends
 * use the derp stream, consecutive frames to one peer forwarded as one run.
 *
 * Everything else (throttled clients, handshakes, malformed or non-datagram
 * frames) falls back to `Client.onFrame`, which also reports errors.
 */

import type { Client } from "./client.ts";
import { DERP_HEADER_LEN } from "../proto/codec_derp.ts";
import { DerpFrame, KEY_LEN, MAX_PACKET_SIZE, V1Frame } from "../proto/frame_type.ts";
import { DERP_STREAM, type Framing } from "../proto/framing.ts";
import type { Generation } from "../proto/generation.ts";
import { sameKeyAt } from "../proto/public_key.ts";
import type { RelayCore } from "./relay_core.ts";
import type { ClientWriter } from "./client_writer.ts";

/** The datagram fast path and the pending run of one {@link Client}. */
export class DatagramForwarder {
  readonly #client: Client;
  readonly #core: RelayCore;
  readonly #writer: ClientWriter;
  /** The sender's generation has varint frame types (1.x). */
  readonly #varintType: boolean;
  /** True when frames can be forwarded as runs: a run-making generation over the derp stream, on both ends. */
  readonly makesRuns: boolean;
  // The pending run (see flushRun); owned by onDatagramFrame, valid within one read chunk.
  #runBuf: Uint8Array | null = null;
  #runStart = 0;
  #runEnd = 0;
  #runCount = 0;
  #runBytes = 0;
  #runDst: Client | null = null;

  /**
   * @param client the sender whose frames this forwards (its writer already made)
   * @param core the relay (routing, clock, metrics)
   * @param gen the sender's generation
   * @param framing how the sender's frames travel
   */
  constructor(client: Client, core: RelayCore, gen: Generation, framing: Framing) {
    this.#client = client;
    this.#core = core;
    this.#writer = client.writer;
    this.#varintType = gen.varintType;
    this.makesRuns = gen.makesRuns && framing === DERP_STREAM;
  }

  /**
   * The hot path for datagram frames: `buf[start..end]` is the payload of a
   * frame of `type`. Handles the common well-formed, unthrottled case without
   * building any object and returns true; returns false to have the caller
   * take the general `Client.onFrame` path (which also reports errors).
   */
  onDatagramFrame(type: number, buf: Uint8Array, start: number, end: number): boolean {
    const client = this.#client;
    if (
      client.rxBucket !== null || (client.state !== "active" && client.state !== "inactive") || this.#writer.closing
    ) {
      return false;
    }
    const len = end - start;
    if (len > MAX_PACKET_SIZE) return false;
    let ecn = 0;
    let seg = 0;
    let contents: number;
    if (this.#varintType) {
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
      client.lastRecvAt = this.#core.tickNow;
      const entry = client.lastEntry;
      if (
        this.#runBuf === buf && start - DERP_HEADER_LEN === this.#runEnd && entry !== null &&
        entry.active === this.#runDst && sameKeyAt(client.lastDst!, client.viewOf(buf), buf.byteOffset + start)
      ) {
        // Same peer, right after the pending run: forward it with the run (see flushRun).
        this.#runEnd = end;
        this.#runCount++;
        this.#runBytes += len - KEY_LEN;
        return true;
      }
      this.flushRun();
      const dst = this.#core.route(client, buf, start, 0, 0, buf, start + KEY_LEN, end);
      if (dst !== null && this.makesRuns && dst.forwarder.makesRuns) {
        this.#runBuf = buf;
        this.#runEnd = end;
        this.#runStart = end;
        this.#runDst = dst;
      }
      return true;
    }
    client.lastRecvAt = this.#core.tickNow;
    this.#core.route(client, buf, start, ecn, seg, buf, contents, end);
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
      const key = this.#client.key;
      c.sendPacketsRecv += count;
      c.bytesRecv += this.#runBytes;
      if (!dst.writer.enqueueDerpRun(key, buf, this.#runStart, this.#runEnd, count, this.#runBytes)) {
        // Not all of it fits: frame by frame, which tail-drops what does not.
        for (let p = this.#runStart; p < this.#runEnd;) {
          const len = ((buf[p + 1]! << 24) >>> 0) + (buf[p + 2]! << 16) + (buf[p + 3]! << 8) + buf[p + 4]!;
          const body = p + DERP_HEADER_LEN;
          if (!dst.writer.enqueueDatagram(key, 0, 0, buf, body + KEY_LEN, body + len)) c.sendPacketsDropped++;
          p = body + len;
        }
      }
    }
    this.#runDst = null;
    this.#runBuf = null;
    this.#runCount = 0;
    this.#runBytes = 0;
  }
}
