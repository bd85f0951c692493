/**
 * @module
 * Codec for the iroh 1.x relay protocol (`iroh-relay-v1` and `iroh-relay-v2`).
 *
 * - One frame per WebSocket binary message: `[type: QUIC varint][payload]`.
 * - All types are below 64, so they encode as one byte; decoding accepts any
 *   varint length (RFC 9000 §16).
 * - `Health` exists only in v1 and `Status` only in v2: each side rejects the
 *   other's, so the version is part of every call.
 *
 * No I/O. Decoders check lengths first and throw only `SyntaxError` or
 * `RangeError`; returned byte fields are views into the input.
 *
 * Port of `protos/relay.rs` and `protos/handshake.rs @v1.0.3`; spec
 * `iroh-relay-protocol.md` §2.3, §3.2.
 */

import { KEY_LEN, MAX_PACKET_SIZE, PING_LEN, V1Frame } from "./frame_type.ts";
import { expectLen, expectMin } from "./frame_length.ts";

/** The two 1.x subprotocol versions. */
export type V1Version = 1 | 2;

/** A 1.x protocol message, named as upstream names it. */
export type V1Msg =
  | { type: "ServerChallenge"; challenge: Uint8Array }
  | { type: "ClientAuth"; publicKey: Uint8Array; signature: Uint8Array }
  | { type: "ServerConfirmsAuth" }
  | { type: "ServerDeniesAuth"; reason: string }
  | { type: "ClientToRelayDatagram"; dstKey: Uint8Array; ecn: number; contents: Uint8Array }
  | { type: "ClientToRelayDatagramBatch"; dstKey: Uint8Array; ecn: number; segmentSize: number; contents: Uint8Array }
  | { type: "RelayToClientDatagram"; srcKey: Uint8Array; ecn: number; contents: Uint8Array }
  | { type: "RelayToClientDatagramBatch"; srcKey: Uint8Array; ecn: number; segmentSize: number; contents: Uint8Array }
  | { type: "EndpointGone"; key: Uint8Array }
  | { type: "Ping"; data: Uint8Array }
  | { type: "Pong"; data: Uint8Array }
  | { type: "Health"; problem: string }
  | { type: "Restarting"; reconnectInMs: number; tryForMs: number }
  | { type: "Status"; status: number };

/** Challenge length in ServerChallenge, in bytes. */
export const CHALLENGE_LEN = 16;
/** Signature length, in bytes. */
const SIG_LEN = 64;
/** ClientAuth payload: key, postcard length byte 0x40, signature. */
export const CLIENT_AUTH_LEN = KEY_LEN + 1 + SIG_LEN;

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** Frame type number of a message. */
export function v1FrameType(msg: V1Msg): number {
  return V1Frame[msg.type];
}

/** Number of bytes a postcard (LEB128) varint of `n` takes. */
function postcardVarintLen(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

/** Payload length (after the type varint), in bytes. */
export function v1PayloadLen(msg: V1Msg): number {
  switch (msg.type) {
    case "ServerChallenge":
      return CHALLENGE_LEN;
    case "ClientAuth":
      return CLIENT_AUTH_LEN;
    case "ServerConfirmsAuth":
      return 0;
    case "ServerDeniesAuth": {
      const n = utf8.encode(msg.reason).length;
      return postcardVarintLen(n) + n;
    }
    case "ClientToRelayDatagram":
    case "RelayToClientDatagram":
      return KEY_LEN + 1 + msg.contents.length;
    case "ClientToRelayDatagramBatch":
    case "RelayToClientDatagramBatch":
      return KEY_LEN + 3 + msg.contents.length;
    case "EndpointGone":
      return KEY_LEN;
    case "Ping":
    case "Pong":
      return PING_LEN;
    case "Health":
      return utf8.encode(msg.problem).length;
    case "Restarting":
      return 8;
    case "Status":
      return 1;
  }
}

/** Writes the payload of `msg` at `buf[off..]`; size `buf` with {@link v1PayloadLen}. */
export function v1WritePayload(msg: V1Msg, buf: Uint8Array, off: number): void {
  switch (msg.type) {
    case "ServerChallenge":
      buf.set(msg.challenge, off);
      return;
    case "ClientAuth":
      buf.set(msg.publicKey, off);
      buf[off + KEY_LEN] = SIG_LEN;
      buf.set(msg.signature, off + KEY_LEN + 1);
      return;
    case "ServerConfirmsAuth":
      return;
    case "ServerDeniesAuth": {
      const text = utf8.encode(msg.reason);
      let n = text.length;
      while (n >= 0x80) {
        buf[off++] = (n & 0x7f) | 0x80;
        n = Math.floor(n / 128);
      }
      buf[off++] = n;
      buf.set(text, off);
      return;
    }
    case "ClientToRelayDatagram":
    case "RelayToClientDatagram":
      buf.set(msg.type === "ClientToRelayDatagram" ? msg.dstKey : msg.srcKey, off);
      buf[off + KEY_LEN] = msg.ecn & 3;
      buf.set(msg.contents, off + KEY_LEN + 1);
      return;
    case "ClientToRelayDatagramBatch":
    case "RelayToClientDatagramBatch":
      buf.set(msg.type === "ClientToRelayDatagramBatch" ? msg.dstKey : msg.srcKey, off);
      buf[off + KEY_LEN] = msg.ecn & 3;
      buf[off + KEY_LEN + 1] = msg.segmentSize >>> 8;
      buf[off + KEY_LEN + 2] = msg.segmentSize & 0xff;
      buf.set(msg.contents, off + KEY_LEN + 3);
      return;
    case "EndpointGone":
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
    case "Status":
      buf[off] = msg.status;
      return;
  }
}

function checkVersion(msg: V1Msg, version: V1Version): void {
  if (msg.type === "Health" && version !== 1) throw new SyntaxError("Health frame is not part of iroh-relay-v2");
  if (msg.type === "Status" && version !== 2) throw new SyntaxError("Status frame is not part of iroh-relay-v1");
}

/**
 * Encodes `msg` as one WebSocket message body: `[type][payload]`.
 *
 * @example
 * ```ts
 * import { encodeV1 } from "./codec_v1.ts";
 * const b = encodeV1({ type: "Status", status: 1 }, 2);
 * if (b[0] !== 0x0d || b[1] !== 1) throw new Error("bad frame");
 * ```
 * @throws {SyntaxError} the message does not exist in `version`
 */
export function encodeV1(msg: V1Msg, version: V1Version): Uint8Array {
  checkVersion(msg, version);
  const out = new Uint8Array(1 + v1PayloadLen(msg));
  out[0] = v1FrameType(msg);
  v1WritePayload(msg, out, 1);
  return out;
}

/**
 * Reads the QUIC varint frame type at the start of `body`.
 * @returns the type and the offset of the payload
 * @throws {SyntaxError} empty or truncated varint
 */
export function readV1Type(body: Uint8Array): { type: number; offset: number } {
  if (body.length === 0) throw new SyntaxError("Empty frame");
  const first = body[0]!;
  const len = 1 << (first >> 6);
  if (body.length < len) throw new SyntaxError("Truncated frame type");
  let type = first & 0x3f;
  for (let i = 1; i < len; i++) type = type * 256 + body[i]!;
  return { type, offset: len };
}

/**
 * Decodes one message body (`[type varint][payload]`).
 *
 * @throws {SyntaxError} unknown type, bad length, or a type not in `version`
 * @throws {RangeError} payload larger than {@link MAX_PACKET_SIZE}
 */
export function decodeV1(body: Uint8Array, version: V1Version): V1Msg {
  const { type, offset } = readV1Type(body);
  return decodeV1Payload(type, body.subarray(offset), version);
}

/**
 * Decodes a frame whose type was already read with {@link readV1Type}.
 *
 * @throws {SyntaxError} unknown type, bad length, or a type not in `version`
 * @throws {RangeError} payload larger than {@link MAX_PACKET_SIZE}
 */
export function decodeV1Payload(type: number, p: Uint8Array, version: V1Version): V1Msg {
  if (p.length > MAX_PACKET_SIZE) {
    throw new RangeError(`Frame payload of ${p.length} bytes exceeds ${MAX_PACKET_SIZE}`);
  }
  let msg: V1Msg;
  switch (type) {
    case V1Frame.ServerChallenge:
      expectLen("ServerChallenge", p, CHALLENGE_LEN);
      msg = { type: "ServerChallenge", challenge: p };
      break;
    case V1Frame.ClientAuth:
      expectLen("ClientAuth", p, CLIENT_AUTH_LEN);
      if (p[KEY_LEN] !== SIG_LEN) throw new SyntaxError("Invalid ClientAuth frame: signature length is not 64");
      msg = { type: "ClientAuth", publicKey: p.subarray(0, KEY_LEN), signature: p.subarray(KEY_LEN + 1) };
      break;
    case V1Frame.ServerConfirmsAuth:
      expectLen("ServerConfirmsAuth", p, 0);
      msg = { type: "ServerConfirmsAuth" };
      break;
    case V1Frame.ServerDeniesAuth: {
      let n = 0;
      let shift = 1;
      let i = 0;
      for (;; i++) {
        if (i >= p.length || i > 4) throw new SyntaxError("Invalid ServerDeniesAuth frame: bad length");
        n += (p[i]! & 0x7f) * shift;
        shift *= 128;
        if ((p[i]! & 0x80) === 0) break;
      }
      expectLen("ServerDeniesAuth", p, i + 1 + n);
      let reason: string;
      try {
        reason = utf8Strict.decode(p.subarray(i + 1));
      } catch {
        throw new SyntaxError("Invalid ServerDeniesAuth frame: reason is not UTF-8");
      }
      msg = { type: "ServerDeniesAuth", reason };
      break;
    }
    case V1Frame.ClientToRelayDatagram:
    case V1Frame.RelayToClientDatagram: {
      const c2r = type === V1Frame.ClientToRelayDatagram;
      expectMin(c2r ? "ClientToRelayDatagram" : "RelayToClientDatagram", p, KEY_LEN + 1);
      const key = p.subarray(0, KEY_LEN);
      const ecn = p[KEY_LEN]! & 3;
      const contents = p.subarray(KEY_LEN + 1);
      msg = c2r
        ? { type: "ClientToRelayDatagram", dstKey: key, ecn, contents }
        : { type: "RelayToClientDatagram", srcKey: key, ecn, contents };
      break;
    }
    case V1Frame.ClientToRelayDatagramBatch:
    case V1Frame.RelayToClientDatagramBatch: {
      const c2r = type === V1Frame.ClientToRelayDatagramBatch;
      expectMin(c2r ? "ClientToRelayDatagramBatch" : "RelayToClientDatagramBatch", p, KEY_LEN + 3);
      const key = p.subarray(0, KEY_LEN);
      const ecn = p[KEY_LEN]! & 3;
      const segmentSize = (p[KEY_LEN + 1]! << 8) | p[KEY_LEN + 2]!;
      const contents = p.subarray(KEY_LEN + 3);
      if (c2r) {
        // A zero segment size means "no segmentation": the plain datagram form.
        msg = segmentSize === 0
          ? { type: "ClientToRelayDatagram", dstKey: key, ecn, contents }
          : { type: "ClientToRelayDatagramBatch", dstKey: key, ecn, segmentSize, contents };
      } else {
        msg = segmentSize === 0
          ? { type: "RelayToClientDatagram", srcKey: key, ecn, contents }
          : { type: "RelayToClientDatagramBatch", srcKey: key, ecn, segmentSize, contents };
      }
      break;
    }
    case V1Frame.EndpointGone:
      expectLen("EndpointGone", p, KEY_LEN);
      msg = { type: "EndpointGone", key: p };
      break;
    case V1Frame.Ping:
      expectLen("Ping", p, PING_LEN);
      msg = { type: "Ping", data: p };
      break;
    case V1Frame.Pong:
      expectLen("Pong", p, PING_LEN);
      msg = { type: "Pong", data: p };
      break;
    case V1Frame.Health: {
      let problem: string;
      try {
        problem = utf8Strict.decode(p);
      } catch {
        throw new SyntaxError("Invalid Health frame: text is not UTF-8");
      }
      msg = { type: "Health", problem };
      break;
    }
    case V1Frame.Restarting: {
      expectLen("Restarting", p, 8);
      const dv = new DataView(p.buffer, p.byteOffset, 8);
      msg = { type: "Restarting", reconnectInMs: dv.getUint32(0), tryForMs: dv.getUint32(4) };
      break;
    }
    case V1Frame.Status:
      expectLen("Status", p, 1);
      msg = { type: "Status", status: p[0]! };
      break;
    default:
      throw new SyntaxError(`Unknown frame type ${type}`);
  }
  checkVersion(msg, version);
  return msg;
}
