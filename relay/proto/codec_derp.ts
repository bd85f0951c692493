/**
 * @module
 * Codec for the iroh 0.35 relay protocol ("derp" framing), in both directions.
 *
 * - Stream form (after `Upgrade: iroh derp http`): `[type u8][len u32 BE][payload]`,
 *   `len` ≤ {@link MAX_FRAME_SIZE}.
 * - WebSocket form: one binary message per frame, `[type u8][payload]`.
 * - Messages keep upstream names (`SendPacket`, `PeerGone`, …) so grep works
 *   across repositories.
 *
 * No I/O here: {@link DerpFrameReader} is fed bytes and hands out frames;
 * encoders write into caller buffers. Decoders check lengths before reading
 * and throw only `SyntaxError` (bad layout) or `RangeError` (too large).
 *
 * Port of `protos/relay.rs @v0.35.0`; spec `iroh-relay-protocol.md` §2.1, §2.2.
 */

import { ChunkReader } from "./chunk_reader.ts";
import { expectLen, expectMin } from "./frame_length.ts";
import { DerpFrame, KEY_LEN, MAX_FRAME_SIZE, MAX_PACKET_SIZE, PING_LEN } from "./frame_type.ts";

/** The `RELAY🔑` magic that starts a ClientInfo payload. */
export const CLIENT_INFO_MAGIC: Uint8Array = new Uint8Array([
  0x52,
  0x45,
  0x4c,
  0x41,
  0x59,
  0xf0,
  0x9f,
  0x94,
  0x91,
]);

/** Length of the stream-form frame header (type + u32 length), in bytes. */
export const DERP_HEADER_LEN = 5;

/** Signature length in ClientInfo, in bytes. */
const SIG_LEN = 64;

/** A 0.35 protocol message, named as upstream names it. */
export type DerpMsg =
  | { type: "ClientInfo"; key: Uint8Array; signature: Uint8Array; message: Uint8Array }
  | { type: "SendPacket"; dstKey: Uint8Array; packet: Uint8Array }
  | { type: "RecvPacket"; srcKey: Uint8Array; packet: Uint8Array }
  | { type: "KeepAlive" }
  | { type: "NotePreferred"; preferred: boolean }
  | { type: "PeerGone"; key: Uint8Array }
  | { type: "Ping"; data: Uint8Array }
  | { type: "Pong"; data: Uint8Array }
  | { type: "Health"; problem: string }
  | { type: "Restarting"; reconnectInMs: number; tryForMs: number };

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** Frame type number of a message. */
export function derpFrameType(msg: DerpMsg): number {
  return DerpFrame[msg.type];
}

/** Payload length of a message (without type byte or length header), in bytes. */
export function derpPayloadLen(msg: DerpMsg): number {
  switch (msg.type) {
    case "ClientInfo":
      return CLIENT_INFO_MAGIC.length + KEY_LEN + SIG_LEN + msg.message.length;
    case "SendPacket":
      return KEY_LEN + msg.packet.length;
    case "RecvPacket":
      return KEY_LEN + msg.packet.length;
    case "KeepAlive":
      return 0;
    case "NotePreferred":
      return 1;
    case "PeerGone":
      return KEY_LEN;
    case "Ping":
    case "Pong":
      return PING_LEN;
    case "Health":
      return utf8.encode(msg.problem).length;
    case "Restarting":
      return 8;
  }
}

/** Writes the payload of `msg` at `buf[off..]`; the caller sized `buf` with {@link derpPayloadLen}. */
export function derpWritePayload(msg: DerpMsg, buf: Uint8Array, off: number): void {
  switch (msg.type) {
    case "ClientInfo":
      buf.set(CLIENT_INFO_MAGIC, off);
      buf.set(msg.key, off + 9);
      buf.set(msg.signature, off + 9 + KEY_LEN);
      buf.set(msg.message, off + 9 + KEY_LEN + SIG_LEN);
      return;
    case "SendPacket":
      buf.set(msg.dstKey, off);
      buf.set(msg.packet, off + KEY_LEN);
      return;
    case "RecvPacket":
      buf.set(msg.srcKey, off);
      buf.set(msg.packet, off + KEY_LEN);
      return;
    case "KeepAlive":
      return;
    case "NotePreferred":
      buf[off] = msg.preferred ? 1 : 0;
      return;
    case "PeerGone":
      buf.set(msg.key, off);
      return;
    case "Ping":
    case "Pong":
      buf.set(msg.data, off);
      return;
    case "Health":
      buf.set(utf8.encode(msg.problem), off);
      return;
    case "Restarting": {
      const dv = new DataView(buf.buffer, buf.byteOffset + off, 8);
      dv.setUint32(0, msg.reconnectInMs);
      dv.setUint32(4, msg.tryForMs);
      return;
    }
  }
}

/**
 * Encodes `msg` in stream form, with the 5-byte header.
 *
 * @example
 * ```ts
 * import { encodeDerp } from "./codec_derp.ts";
 * const f = encodeDerp({ type: "Ping", data: new Uint8Array(8) });
 * if (f.length !== 13 || f[0] !== 12) throw new Error("bad frame");
 * ```
 */
export function encodeDerp(msg: DerpMsg): Uint8Array {
  const len = derpPayloadLen(msg);
  const out = new Uint8Array(DERP_HEADER_LEN + len);
  writeDerpHeader(out, 0, derpFrameType(msg), len);
  derpWritePayload(msg, out, DERP_HEADER_LEN);
  return out;
}

/** Encodes `msg` in WebSocket form: `[type][payload]`. */
export function encodeDerpWs(msg: DerpMsg): Uint8Array {
  const len = derpPayloadLen(msg);
  const out = new Uint8Array(1 + len);
  out[0] = derpFrameType(msg);
  derpWritePayload(msg, out, 1);
  return out;
}

/** Writes a stream-form header at `buf[off..off+5]`. */
export function writeDerpHeader(buf: Uint8Array, off: number, type: number, len: number): void {
  buf[off] = type;
  buf[off + 1] = len >>> 24;
  buf[off + 2] = (len >>> 16) & 0xff;
  buf[off + 3] = (len >>> 8) & 0xff;
  buf[off + 4] = len & 0xff;
}

/**
 * Decodes one frame given its type and payload (either transport form).
 * Returned byte fields are views into `payload`: copy them if they outlive it.
 *
 * @throws {SyntaxError} unknown type or wrong length for the type
 * @throws {RangeError} packet larger than {@link MAX_PACKET_SIZE}
 */
export function decodeDerp(type: number, payload: Uint8Array): DerpMsg {
  switch (type) {
    case DerpFrame.ClientInfo: {
      expectMin("ClientInfo", payload, CLIENT_INFO_MAGIC.length + KEY_LEN + SIG_LEN + 1);
      for (let i = 0; i < CLIENT_INFO_MAGIC.length; i++) {
        if (payload[i] !== CLIENT_INFO_MAGIC[i]) throw new SyntaxError("Invalid ClientInfo frame: bad magic");
      }
      const k = CLIENT_INFO_MAGIC.length;
      return {
        type: "ClientInfo",
        key: payload.subarray(k, k + KEY_LEN),
        signature: payload.subarray(k + KEY_LEN, k + KEY_LEN + SIG_LEN),
        message: payload.subarray(k + KEY_LEN + SIG_LEN),
      };
    }
    case DerpFrame.SendPacket:
    case DerpFrame.RecvPacket: {
      const name = type === DerpFrame.SendPacket ? "SendPacket" : "RecvPacket";
      expectMin(name, payload, KEY_LEN);
      if (payload.length - KEY_LEN > MAX_PACKET_SIZE) {
        throw new RangeError(
          `Invalid ${name} frame: packet of ${payload.length - KEY_LEN} bytes exceeds ${MAX_PACKET_SIZE}`,
        );
      }
      const key = payload.subarray(0, KEY_LEN);
      const packet = payload.subarray(KEY_LEN);
      return type === DerpFrame.SendPacket
        ? { type: "SendPacket", dstKey: key, packet }
        : { type: "RecvPacket", srcKey: key, packet };
    }
    case DerpFrame.KeepAlive:
      expectLen("KeepAlive", payload, 0);
      return { type: "KeepAlive" };
    case DerpFrame.NotePreferred:
      expectLen("NotePreferred", payload, 1);
      if (payload[0]! > 1) throw new SyntaxError(`Invalid NotePreferred frame: value ${payload[0]}`);
      return { type: "NotePreferred", preferred: payload[0] === 1 };
    case DerpFrame.PeerGone:
      expectLen("PeerGone", payload, KEY_LEN);
      return { type: "PeerGone", key: payload };
    case DerpFrame.Ping:
      expectLen("Ping", payload, PING_LEN);
      return { type: "Ping", data: payload };
    case DerpFrame.Pong:
      expectLen("Pong", payload, PING_LEN);
      return { type: "Pong", data: payload };
    case DerpFrame.Health: {
      let problem: string;
      try {
        problem = utf8Strict.decode(payload);
      } catch {
        throw new SyntaxError("Invalid Health frame: text is not UTF-8");
      }
      return { type: "Health", problem };
    }
    case DerpFrame.Restarting: {
      expectLen("Restarting", payload, 8);
      const dv = new DataView(payload.buffer, payload.byteOffset, 8);
      return { type: "Restarting", reconnectInMs: dv.getUint32(0), tryForMs: dv.getUint32(4) };
    }
    default:
      throw new SyntaxError(`Unknown frame type ${type}`);
  }
}

/** One stream-form frame located inside the reader's buffer. */
export interface RawFrame {
  /** Frame type byte. */
  type: number;
  /** Payload view; valid until the next {@link DerpFrameReader.push}. */
  payload: Uint8Array;
}

/**
 * Incremental splitter for the stream form: push socket bytes, pull frames.
 * Frames wholly inside a pushed chunk are returned as views without copying.
 */
export class DerpFrameReader {
  #in = new ChunkReader();

  /** Hands a chunk of stream bytes to the reader. Earlier views become invalid. */
  push(chunk: Uint8Array): void {
    this.#in.push(chunk);
  }

  /** Bytes of storage this reader owns (a straddling frame's arrived bytes, rounded up); for memory-bound tests. */
  get ownedBytes(): number {
    return this.#in.storeBytes;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#in.available;
  }

  /** Bytes holding the payload of the frame {@link read} returned (valid until the next `push`). */
  buf: Uint8Array = new Uint8Array(0);
  /** Start of that payload in {@link buf}. */
  start = 0;
  /** End of that payload in {@link buf}. */
  end = 0;

  /**
   * Returns the next complete frame, or `null` when more bytes are needed.
   * @throws {RangeError} a header announces more than {@link MAX_FRAME_SIZE}
   */
  next(): RawFrame | null {
    const type = this.read();
    return type < 0 ? null : { type, payload: this.buf.subarray(this.start, this.end) };
  }

  /**
   * The allocation-free form of {@link next}: returns the type of the next
   * complete frame, its payload at `buf[start..end]`, or -1 when more bytes
   * are needed.
   * @throws {RangeError} a header announces more than {@link MAX_FRAME_SIZE}
   */
  read(): number {
    const r = this.#in;
    for (;;) {
      const c = r.buf;
      const p = r.pos;
      const avail = c.length - p;
      let want = DERP_HEADER_LEN;
      if (avail >= DERP_HEADER_LEN) {
        const len = ((c[p + 1]! << 24) >>> 0) + (c[p + 2]! << 16) + (c[p + 3]! << 8) + c[p + 4]!;
        if (len > MAX_FRAME_SIZE) {
          throw new RangeError(`Frame of ${len} bytes exceeds the ${MAX_FRAME_SIZE}-byte limit`);
        }
        want = DERP_HEADER_LEN + len;
        if (avail >= want) {
          r.pos = p + want;
          this.buf = c;
          this.start = p + DERP_HEADER_LEN;
          this.end = p + want;
          return c[p]!;
        }
      }
      if (!r.keep(want)) return -1;
    }
  }
}
