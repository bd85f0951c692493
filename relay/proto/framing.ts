/**
 * @module
 * How frames are delimited on a connection, as seen by the encoder: the
 * bytes that precede a frame's payload (length header, WebSocket header, the
 * type byte). The client encodes each outgoing frame straight into its
 * connection's write buffer with one of these, so a forwarded datagram is
 * copied once, from the sender's read buffer to the receiver's write buffer,
 * with no message object in between.
 *
 * - {@link DERP_STREAM}: `[type u8][len u32 BE]` (0.35 `iroh derp http`).
 * - {@link WS_BINARY}: an unmasked RFC 6455 binary frame header, then the
 *   type byte (both generations over the raw listener; every frame type is
 *   below 64, so the 1.x varint type is one byte).
 * - {@link MESSAGES}: `[body len u32 BE][type]`, a private form for senders
 *   that need message boundaries (the runtime WebSocket, test doubles);
 *   {@link splitMessages} turns it back into bodies.
 */

import { writeDerpHeader } from "./codec_derp.ts";
import { writeWsHeader, wsHeaderLen, WsOpcode } from "./ws_frame.ts";

/** Frame delimiting for the encoder; see the module doc. */
export interface Framing {
  /** Name, for logs and tests. */
  readonly name: "derp" | "websocket" | "messages";
  /** Bytes written before a payload of `payloadLen` bytes, type byte included. */
  prefixLen(payloadLen: number): number;
  /** Writes the prefix at `buf[off..]`; returns its length. */
  writePrefix(buf: Uint8Array, off: number, type: number, payloadLen: number): number;
}

/** 0.35 stream framing: `[type][len u32 BE]`. */
export const DERP_STREAM: Framing = {
  name: "derp",
  prefixLen: () => 5,
  writePrefix(buf, off, type, payloadLen) {
    writeDerpHeader(buf, off, type, payloadLen);
    return 5;
  },
};

/** WebSocket binary message per frame, server side (unmasked): header, then the type byte. */
export const WS_BINARY: Framing = {
  name: "websocket",
  prefixLen: (payloadLen) => wsHeaderLen(payloadLen + 1) + 1,
  writePrefix(buf, off, type, payloadLen) {
    const h = writeWsHeader(buf, off, WsOpcode.Binary, payloadLen + 1);
    buf[off + h] = type;
    return h + 1;
  },
};

/** Length-delimited message bodies: `[body len u32 BE][type][payload]`. */
export const MESSAGES: Framing = {
  name: "messages",
  prefixLen: () => 5,
  writePrefix(buf, off, type, payloadLen) {
    const n = payloadLen + 1;
    buf[off] = n >>> 24;
    buf[off + 1] = (n >>> 16) & 0xff;
    buf[off + 2] = (n >>> 8) & 0xff;
    buf[off + 3] = n & 0xff;
    buf[off + 4] = type;
    return 5;
  },
};

/** Splits {@link MESSAGES}-framed bytes into message bodies (`[type][payload]` views). */
export function splitMessages(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let off = 0;
  while (off + 4 <= bytes.length) {
    const n = ((bytes[off]! << 24) >>> 0) + (bytes[off + 1]! << 16) + (bytes[off + 2]! << 8) + bytes[off + 3]!;
    out.push(bytes.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  return out;
}
