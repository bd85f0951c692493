/**
 * @module
 * RFC 6455 WebSocket framing for the raw listener, which must serve
 * WebSocket and the non-WebSocket `iroh derp http` upgrade on one socket, so
 * it cannot hand connections to `Deno.upgradeWebSocket` (spec §0).
 *
 * - {@link WsReader}: incremental; unmasks client frames in place, answers
 *   nothing itself, reassembles fragmented messages, enforces the message
 *   size limit before buffering, and reports protocol violations with the
 *   close code to send.
 * - {@link writeWsHeader} / {@link encodeWsFrame}: server frames (unmasked)
 *   and, for test clients, masked frames.
 *
 * No extensions are negotiated (iroh sends no permessage-deflate), so any
 * RSV bit is an error.
 */

import { createHash } from "node:crypto";
import { ChunkReader } from "./chunk_reader.ts";

/** Frame opcodes. */
export const WsOpcode = {
  Continuation: 0,
  Text: 1,
  Binary: 2,
  Close: 8,
  Ping: 9,
  Pong: 10,
} as const;

/** Close status codes used here. */
export const WsClose = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  TooBig: 1009,
} as const;

/** What a reader produces. Views stay valid until the next `push`. */
export type WsEvent =
  | { kind: "message"; binary: boolean; data: Uint8Array }
  | { kind: "ping"; data: Uint8Array }
  | { kind: "pong"; data: Uint8Array }
  | { kind: "close"; code: number; reason: string };

/** A violation of RFC 6455 by the peer; `code` is the close code to answer with. */
export class WsProtocolError extends Error {
  /** Close code to send before closing. */
  readonly code: number;
  /** @param code close code; @param message what was wrong */
  constructor(code: number, message: string) {
    super(message);
    this.name = "WsProtocolError";
    this.code = code;
  }
}

/** Options of {@link WsReader}. */
export interface WsReaderOptions {
  /** Largest message accepted (after reassembly), in bytes. */
  maxMessage: number;
  /** True on the server side: every frame must be masked. */
  expectMasked: boolean;
}

const utf8 = new TextDecoder();

/** Incremental RFC 6455 frame reader; see the module doc. */
export class WsReader {
  #in = new ChunkReader();
  #opts: WsReaderOptions;
  /** Opcode of the message being reassembled, or -1. */
  #fragOpcode = -1;
  #frag: Uint8Array = new Uint8Array(0);
  #fragLen = 0;

  /** @param opts size limit and masking side */
  constructor(opts: WsReaderOptions) {
    this.#opts = opts;
  }

  /** Hands a chunk of socket bytes to the reader. */
  push(chunk: Uint8Array): void {
    this.#in.push(chunk);
  }

  /** Bytes of storage this reader owns (a straddling frame's arrived bytes, rounded up); for memory-bound tests. */
  get ownedBytes(): number {
    return this.#in.storeBytes;
  }

  /** Bytes received but not yet consumed. */
  get buffered(): number {
    return this.#in.available;
  }

  /** Bytes holding the payload of what {@link read} returned (valid until the next `push`). */
  buf: Uint8Array = new Uint8Array(0);
  /** Start of that payload in {@link buf}. */
  start = 0;
  /** End of that payload in {@link buf}. */
  end = 0;

  /**
   * Returns the next event, or `null` when more bytes are needed.
   * @throws {WsProtocolError}
   */
  next(): WsEvent | null {
    const op = this.read();
    if (op < 0) return null;
    const data = this.buf.subarray(this.start, this.end);
    switch (op) {
      case WsOpcode.Ping:
        return { kind: "ping", data };
      case WsOpcode.Pong:
        return { kind: "pong", data };
      case WsOpcode.Close:
        return { kind: "close", code: closeCode(data), reason: data.length > 2 ? utf8.decode(data.subarray(2)) : "" };
      default:
        return { kind: "message", binary: op === WsOpcode.Binary, data };
    }
  }

  /**
   * The allocation-free form of {@link next}: returns the opcode of the next
   * whole message (Text/Binary, reassembled if fragmented) or control frame
   * (Ping/Pong/Close), with its unmasked payload at
   * `buf[start..end]`; or -1 when more bytes are needed.
   * @throws {WsProtocolError}
   */
  read(): number {
    for (;;) {
      const r = this.#in;
      const b = r.buf;
      const p = r.pos;
      const avail = b.length - p;
      if (avail < 2) {
        if (r.keep(14)) continue;
        return -1;
      }
      const b0 = b[p]!;
      const b1 = b[p + 1]!;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      const masked = (b1 & 0x80) !== 0;
      if ((b0 & 0x70) !== 0) throw new WsProtocolError(WsClose.ProtocolError, "Reserved bits set without an extension");
      if (masked !== this.#opts.expectMasked) {
        throw new WsProtocolError(
          WsClose.ProtocolError,
          masked ? "Server frame is masked" : "Client frame is not masked",
        );
      }
      let len = b1 & 0x7f;
      let hdr = 2;
      if (len === 126) {
        hdr = 4;
        if (avail < hdr) {
          if (r.keep(14)) continue;
          return -1;
        }
        len = (b[p + 2]! << 8) | b[p + 3]!;
      } else if (len === 127) {
        hdr = 10;
        if (avail < hdr) {
          if (r.keep(14)) continue;
          return -1;
        }
        if (b[p + 2]! & 0x80) throw new WsProtocolError(WsClose.ProtocolError, "Frame length has the top bit set");
        // Anything past 2^32 is over every limit we have: only the low word matters.
        if (b[p + 2]! | b[p + 3]! | b[p + 4]! | b[p + 5]!) {
          throw new WsProtocolError(WsClose.TooBig, "Frame exceeds the message size limit");
        }
        len = ((b[p + 6]! << 24) >>> 0) + (b[p + 7]! << 16) + (b[p + 8]! << 8) + b[p + 9]!;
      }
      const isControl = opcode >= 8;
      if (isControl) {
        if (!fin) throw new WsProtocolError(WsClose.ProtocolError, "Fragmented control frame");
        if (len > 125) throw new WsProtocolError(WsClose.ProtocolError, "Control frame longer than 125 bytes");
        if (opcode !== WsOpcode.Close && opcode !== WsOpcode.Ping && opcode !== WsOpcode.Pong) {
          throw new WsProtocolError(WsClose.ProtocolError, `Unknown opcode ${opcode}`);
        }
      } else if (opcode !== WsOpcode.Continuation && opcode !== WsOpcode.Text && opcode !== WsOpcode.Binary) {
        throw new WsProtocolError(WsClose.ProtocolError, `Unknown opcode ${opcode}`);
      } else if (this.#fragLen + len > this.#opts.maxMessage) {
        throw new WsProtocolError(WsClose.TooBig, `Message exceeds ${this.#opts.maxMessage} bytes`);
      }
      const maskLen = masked ? 4 : 0;
      const total = hdr + maskLen + len;
      if (avail < total) {
        if (r.keep(total)) continue;
        return -1;
      }
      r.pos = p + total;
      const start = p + hdr + maskLen;
      const end = p + total;
      if (masked) unmask(b, start, end, p + hdr);

      if (isControl) {
        if (opcode === WsOpcode.Close && len === 1) {
          throw new WsProtocolError(WsClose.ProtocolError, "Close frame of 1 byte");
        }
        return this.#set(b, start, end, opcode);
      }
      if (opcode === WsOpcode.Continuation) {
        if (this.#fragOpcode < 0) throw new WsProtocolError(WsClose.ProtocolError, "Continuation without a message");
        this.#appendFragment(b.subarray(start, end));
        if (!fin) continue;
        const op = this.#fragOpcode;
        const whole = this.#frag;
        const wholeLen = this.#fragLen;
        this.#fragOpcode = -1;
        this.#frag = new Uint8Array(0);
        this.#fragLen = 0;
        return this.#set(whole, 0, wholeLen, op);
      }
      if (this.#fragOpcode >= 0) {
        throw new WsProtocolError(WsClose.ProtocolError, "New message inside a fragmented one");
      }
      if (!fin) {
        this.#fragOpcode = opcode;
        this.#appendFragment(b.subarray(start, end));
        continue;
      }
      return this.#set(b, start, end, opcode);
    }
  }

  #set(buf: Uint8Array, start: number, end: number, op: number): number {
    this.buf = buf;
    this.start = start;
    this.end = end;
    return op;
  }

  #appendFragment(data: Uint8Array): void {
    const need = this.#fragLen + data.length;
    if (need > this.#frag.length) {
      const grown = new Uint8Array(Math.max(need, this.#frag.length * 2, 1024));
      grown.set(this.#frag.subarray(0, this.#fragLen));
      this.#frag = grown;
    }
    this.#frag.set(data, this.#fragLen);
    this.#fragLen = need;
  }
}

/** True on little-endian hosts, where a mask word's first byte is its low byte. */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * XORs `buf[start..end]` in place with the 4-byte mask found at
 * `mask[at..at+4]`. Unmasking is the largest per-message cost of the
 * WebSocket path (a 1,200-byte datagram is 1,200 XORs), so the aligned
 * middle is done 4 bytes at a time through a `Uint32Array` view.
 */
function unmask(buf: Uint8Array, start: number, end: number, at: number, mask: Uint8Array = buf): void {
  const m0 = mask[at]!, m1 = mask[at + 1]!, m2 = mask[at + 2]!, m3 = mask[at + 3]!;
  let i = start;
  let phase = 0;
  const head = (4 - ((buf.byteOffset + i) & 3)) & 3;
  for (const stop = Math.min(end, i + head); i < stop; i++, phase = (phase + 1) & 3) {
    buf[i] = buf[i]! ^ (phase === 0 ? m0 : phase === 1 ? m1 : phase === 2 ? m2 : m3);
  }
  const words = (end - i) >>> 2;
  if (words >= 8) {
    // The mask rotated to the current phase, as the word the next 4 bytes form.
    const b0 = phase === 0 ? m0 : phase === 1 ? m1 : phase === 2 ? m2 : m3;
    const b1 = phase === 0 ? m1 : phase === 1 ? m2 : phase === 2 ? m3 : m0;
    const b2 = phase === 0 ? m2 : phase === 1 ? m3 : phase === 2 ? m0 : m1;
    const b3 = phase === 0 ? m3 : phase === 1 ? m0 : phase === 2 ? m1 : m2;
    const w = LITTLE_ENDIAN ? (b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)) : ((b0 << 24) | (b1 << 16) | (b2 << 8) | b3);
    const u32 = new Uint32Array(buf.buffer, buf.byteOffset + i, words);
    for (let j = 0; j < words; j++) u32[j] = u32[j]! ^ w;
    i += words << 2;
  }
  for (; i < end; i++, phase = (phase + 1) & 3) {
    buf[i] = buf[i]! ^ (phase === 0 ? m0 : phase === 1 ? m1 : phase === 2 ? m2 : m3);
  }
}

/** Status code of a close frame payload (1005 when absent). */
export function closeCode(data: Uint8Array): number {
  return data.length >= 2 ? (data[0]! << 8) | data[1]! : 1005;
}

/** Header length of a frame with a `len`-byte payload, in bytes. */
export function wsHeaderLen(len: number, masked = false): number {
  return (len < 126 ? 2 : len < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/**
 * Writes a final-fragment frame header at `buf[off..]` and returns its length.
 * With `mask`, the mask key is written too; the caller masks the payload.
 */
export function writeWsHeader(
  buf: Uint8Array,
  off: number,
  opcode: number,
  len: number,
  mask?: Uint8Array,
): number {
  buf[off] = 0x80 | opcode;
  const m = mask ? 0x80 : 0;
  let h: number;
  if (len < 126) {
    buf[off + 1] = m | len;
    h = 2;
  } else if (len < 65536) {
    buf[off + 1] = m | 126;
    buf[off + 2] = len >>> 8;
    buf[off + 3] = len & 0xff;
    h = 4;
  } else {
    buf[off + 1] = m | 127;
    buf.fill(0, off + 2, off + 6);
    buf[off + 6] = len >>> 24;
    buf[off + 7] = (len >>> 16) & 0xff;
    buf[off + 8] = (len >>> 8) & 0xff;
    buf[off + 9] = len & 0xff;
    h = 10;
  }
  if (mask) {
    buf.set(mask.subarray(0, 4), off + h);
    h += 4;
  }
  return h;
}

/**
 * Encodes one complete frame. With `mask` (client side) the payload is
 * copied masked; without, it is copied as is.
 */
export function encodeWsFrame(opcode: number, payload: Uint8Array, mask?: Uint8Array): Uint8Array {
  const out = new Uint8Array(wsHeaderLen(payload.length, mask !== undefined) + payload.length);
  const h = writeWsHeader(out, 0, opcode, payload.length, mask);
  out.set(payload, h);
  if (mask) unmask(out, h, out.length, 0, mask);
  return out;
}

/** Payload of a close frame: status code, then UTF-8 reason (≤ 123 bytes). */
export function closePayload(code: number, reason = ""): Uint8Array {
  const text = new TextEncoder().encode(reason).subarray(0, 123);
  const out = new Uint8Array(2 + text.length);
  out[0] = code >>> 8;
  out[1] = code & 0xff;
  out.set(text, 2);
  return out;
}

/**
 * The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`. Synchronous
 * `node:crypto` SHA-1: about 8× the rate of an awaited WebCrypto digest
 * here, which matters in a connect storm.
 */
export function wsAccept(key: string): string {
  return createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
}
