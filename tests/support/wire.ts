/**
 * @module
 * The test clients' own wire codec, written from the spec
 * (`iroh-relay-protocol.md` §2–§3, RFC 6455 §5) and independent of
 * `relay/proto/`: a bug shared by the relay's encoder and decoder cannot hide
 * behind a test that uses them on both ends. The spec's byte vectors are the
 * shared truth (`wire_test.ts` checks this file against them).
 *
 * Message objects have the same shapes and upstream names as the relay's, so
 * tests compare them directly. Decoding is strict about lengths (a test
 * client should notice a malformed frame from the server) but does not check
 * that keys are curve points.
 */

import { blake3 } from "@noble/hashes/blake3";

/** iroh 0.35 messages (spec §2.2). */
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

/** iroh 1.x messages (spec §2.3). */
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

/** The 0.35 type numbers, from the spec's table. */
const DERP_TYPES: Record<DerpMsg["type"], number> = {
  ClientInfo: 2,
  SendPacket: 4,
  RecvPacket: 5,
  KeepAlive: 6,
  NotePreferred: 7,
  PeerGone: 8,
  Ping: 12,
  Pong: 13,
  Health: 14,
  Restarting: 15,
};

/** The 1.x type numbers, from the spec's table. */
const V1_TYPES: Record<V1Msg["type"], number> = {
  ServerChallenge: 0,
  ClientAuth: 1,
  ServerConfirmsAuth: 2,
  ServerDeniesAuth: 3,
  ClientToRelayDatagram: 4,
  ClientToRelayDatagramBatch: 5,
  RelayToClientDatagram: 6,
  RelayToClientDatagramBatch: 7,
  EndpointGone: 8,
  Ping: 9,
  Pong: 10,
  Health: 11,
  Restarting: 12,
  Status: 13,
};

/** `RELAY🔑`, the ClientInfo magic. */
const MAGIC = Uint8Array.of(0x52, 0x45, 0x4c, 0x41, 0x59, 0xf0, 0x9f, 0x94, 0x91);
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function u32(n: number): Uint8Array {
  return Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
}

function readU32(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) >>> 0) + (b[off + 1]! << 16) + (b[off + 2]! << 8) + b[off + 3]!;
}

function need(ok: boolean, what: string): void {
  if (!ok) throw new RangeError(`malformed frame from the server: ${what}`);
}

/** The 0.35 payload of a message (no type byte, no length). */
function derpPayload(m: DerpMsg): Uint8Array {
  switch (m.type) {
    case "ClientInfo":
      return cat(MAGIC, m.key, m.signature, m.message);
    case "SendPacket":
      return cat(m.dstKey, m.packet);
    case "RecvPacket":
      return cat(m.srcKey, m.packet);
    case "KeepAlive":
      return new Uint8Array(0);
    case "NotePreferred":
      return Uint8Array.of(m.preferred ? 1 : 0);
    case "PeerGone":
      return m.key.slice();
    case "Ping":
    case "Pong":
      return m.data.slice();
    case "Health":
      return utf8.encode(m.problem);
    case "Restarting":
      return cat(u32(m.reconnectInMs), u32(m.tryForMs));
  }
}

/** A 0.35 frame on the derp byte stream: `[type u8][len u32 BE][payload]`. */
export function encodeDerp(m: DerpMsg): Uint8Array {
  const p = derpPayload(m);
  return cat(Uint8Array.of(DERP_TYPES[m.type]), u32(p.length), p);
}

/** A 0.35 frame as a WebSocket message body: `[type u8][payload]`. */
export function encodeDerpWs(m: DerpMsg): Uint8Array {
  return cat(Uint8Array.of(DERP_TYPES[m.type]), derpPayload(m));
}

/** Decodes a 0.35 payload of frame type `type` (server-to-client and client-to-server types). */
export function decodeDerp(type: number, p: Uint8Array): DerpMsg {
  switch (type) {
    case 2:
      need(p.length >= 9 + 32 + 64 + 1, "ClientInfo length");
      return { type: "ClientInfo", key: p.slice(9, 41), signature: p.slice(41, 105), message: p.slice(105) };
    case 4:
      need(p.length >= 32, "SendPacket length");
      return { type: "SendPacket", dstKey: p.slice(0, 32), packet: p.slice(32) };
    case 5:
      need(p.length >= 32 && p.length <= 32 + 65536, "RecvPacket length");
      return { type: "RecvPacket", srcKey: p.slice(0, 32), packet: p.slice(32) };
    case 6:
      return { type: "KeepAlive" };
    case 7:
      need(p.length === 1 && p[0]! <= 1, "NotePreferred");
      return { type: "NotePreferred", preferred: p[0] === 1 };
    case 8:
      need(p.length === 32, "PeerGone length");
      return { type: "PeerGone", key: p.slice() };
    case 12:
    case 13:
      need(p.length === 8, "Ping/Pong length");
      return { type: type === 12 ? "Ping" : "Pong", data: p.slice() };
    case 14:
      return { type: "Health", problem: utf8Strict.decode(p) };
    case 15:
      need(p.length === 8, "Restarting length");
      return { type: "Restarting", reconnectInMs: readU32(p, 0), tryForMs: readU32(p, 4) };
    default:
      throw new RangeError(`unknown 0.35 frame type ${type}`);
  }
}

/** Cuts `[type][len u32][payload]` frames out of a byte stream. */
export class DerpStreamReader {
  #buf: Uint8Array = new Uint8Array(0);

  /** Appends received bytes. */
  push(chunk: Uint8Array): void {
    this.#buf = cat(this.#buf, chunk);
  }

  /** The next whole frame, or null until more bytes arrive. */
  next(): { type: number; payload: Uint8Array } | null {
    if (this.#buf.length < 5) return null;
    const len = readU32(this.#buf, 1);
    need(len <= 1024 * 1024, `frame of ${len} bytes`);
    if (this.#buf.length < 5 + len) return null;
    const frame = { type: this.#buf[0]!, payload: this.#buf.slice(5, 5 + len) };
    this.#buf = this.#buf.slice(5 + len);
    return frame;
  }
}

/** A QUIC varint (RFC 9000 §16) at the start of `b`: its value and length. */
export function readVarint(b: Uint8Array): { value: number; length: number } {
  need(b.length >= 1, "empty message");
  const length = 1 << (b[0]! >> 6);
  need(b.length >= length, "truncated varint");
  let value = b[0]! & 0x3f;
  for (let i = 1; i < length; i++) value = value * 256 + b[i]!;
  return { value, length };
}

/** Postcard varint (LEB128) of `n`. */
function leb(n: number): Uint8Array {
  const out: number[] = [];
  do {
    out.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return Uint8Array.from(out);
}

/** A 1.x message body (one WebSocket message): 1-byte varint type, then the payload. */
export function encodeV1(m: V1Msg, _version: 1 | 2 = 2): Uint8Array {
  const t = Uint8Array.of(V1_TYPES[m.type]);
  switch (m.type) {
    case "ServerChallenge":
      return cat(t, m.challenge);
    case "ClientAuth":
      return cat(t, m.publicKey, Uint8Array.of(0x40), m.signature);
    case "ServerConfirmsAuth":
      return t;
    case "ServerDeniesAuth": {
      const r = utf8.encode(m.reason);
      return cat(t, leb(r.length), r);
    }
    case "ClientToRelayDatagram":
      return cat(t, m.dstKey, Uint8Array.of(m.ecn & 3), m.contents);
    case "RelayToClientDatagram":
      return cat(t, m.srcKey, Uint8Array.of(m.ecn & 3), m.contents);
    case "ClientToRelayDatagramBatch":
      return cat(t, m.dstKey, Uint8Array.of(m.ecn & 3, m.segmentSize >> 8, m.segmentSize & 255), m.contents);
    case "RelayToClientDatagramBatch":
      return cat(t, m.srcKey, Uint8Array.of(m.ecn & 3, m.segmentSize >> 8, m.segmentSize & 255), m.contents);
    case "EndpointGone":
      return cat(t, m.key);
    case "Ping":
    case "Pong":
      return cat(t, m.data);
    case "Health":
      return cat(t, utf8.encode(m.problem));
    case "Restarting":
      return cat(t, u32(m.reconnectInMs), u32(m.tryForMs));
    case "Status":
      return cat(t, Uint8Array.of(m.status));
  }
}

/** Decodes a 1.x message body; `version` decides whether Health (v1) or Status (v2) is legal. */
export function decodeV1(body: Uint8Array, version: 1 | 2): V1Msg {
  const { value: type, length } = readVarint(body);
  const p = body.slice(length);
  switch (type) {
    case 0:
      need(p.length === 16, "ServerChallenge length");
      return { type: "ServerChallenge", challenge: p };
    case 1:
      need(p.length === 97 && p[32] === 0x40, "ClientAuth layout");
      return { type: "ClientAuth", publicKey: p.slice(0, 32), signature: p.slice(33) };
    case 2:
      need(p.length === 0, "ServerConfirmsAuth length");
      return { type: "ServerConfirmsAuth" };
    case 3: {
      const n = readLeb(p);
      need(n.length + n.value === p.length, "ServerDeniesAuth length");
      return { type: "ServerDeniesAuth", reason: utf8Strict.decode(p.subarray(n.length)) };
    }
    case 4:
    case 6: {
      need(p.length >= 33, "datagram length");
      const ecn = p[32]! & 3;
      return type === 4
        ? { type: "ClientToRelayDatagram", dstKey: p.slice(0, 32), ecn, contents: p.slice(33) }
        : { type: "RelayToClientDatagram", srcKey: p.slice(0, 32), ecn, contents: p.slice(33) };
    }
    case 5:
    case 7: {
      need(p.length >= 35, "datagram batch length");
      const ecn = p[32]! & 3;
      const segmentSize = (p[33]! << 8) | p[34]!;
      return type === 5
        ? { type: "ClientToRelayDatagramBatch", dstKey: p.slice(0, 32), ecn, segmentSize, contents: p.slice(35) }
        : { type: "RelayToClientDatagramBatch", srcKey: p.slice(0, 32), ecn, segmentSize, contents: p.slice(35) };
    }
    case 8:
      need(p.length === 32, "EndpointGone length");
      return { type: "EndpointGone", key: p };
    case 9:
    case 10:
      need(p.length === 8, "Ping/Pong length");
      return { type: type === 9 ? "Ping" : "Pong", data: p };
    case 11:
      need(version === 1, "Health sent to a v2 client");
      return { type: "Health", problem: utf8Strict.decode(p) };
    case 12:
      need(p.length === 8, "Restarting length");
      return { type: "Restarting", reconnectInMs: readU32(p, 0), tryForMs: readU32(p, 4) };
    case 13:
      need(version === 2 && p.length === 1, "Status sent to a v1 client, or its length");
      return { type: "Status", status: p[0]! };
    default:
      throw new RangeError(`unknown 1.x frame type ${type}`);
  }
}

function readLeb(b: Uint8Array): { value: number; length: number } {
  let value = 0;
  for (let i = 0; i < 5 && i < b.length; i++) {
    value += (b[i]! & 0x7f) * 2 ** (7 * i);
    if ((b[i]! & 0x80) === 0) return { value, length: i + 1 };
  }
  throw new RangeError("malformed frame from the server: bad postcard varint");
}

/** The 32 bytes a 1.x client signs for `challenge` (spec §3.2: BLAKE3 derive_key). */
export function challengeMessage(challenge: Uint8Array): Uint8Array {
  return blake3(challenge, { context: utf8.encode("iroh-relay handshake v1 challenge signature") });
}

/** RFC 6455 opcodes. */
export const WsOpcode = { Continuation: 0, Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 } as const;

/** One WebSocket frame, FIN set, masked with `mask` when given (clients must mask). */
export function encodeWsFrame(opcode: number, payload: Uint8Array, mask?: Uint8Array): Uint8Array {
  const len = payload.length;
  const head: number[] = [0x80 | opcode];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 255);
  else head.push(m | 127, 0, 0, 0, 0, ...u32(len));
  if (!mask) return cat(Uint8Array.from(head), payload);
  const body = payload.slice();
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  return cat(Uint8Array.from(head), mask, body);
}

/** What {@link WsStreamReader} hands out. */
export type WsEvent =
  | { kind: "message"; binary: boolean; data: Uint8Array }
  | { kind: "ping" | "pong"; data: Uint8Array }
  | { kind: "close"; code: number; reason: string };

/** Reassembles WebSocket messages (fragmented or not) and control frames from a byte stream. */
export class WsStreamReader {
  #buf: Uint8Array = new Uint8Array(0);
  #parts: Uint8Array[] = [];
  #binary = false;
  readonly #maxMessage: number;

  /** @param maxMessage largest message accepted, bytes */
  constructor(maxMessage = 2 << 20) {
    this.#maxMessage = maxMessage;
  }

  /** Appends received bytes. */
  push(chunk: Uint8Array): void {
    this.#buf = cat(this.#buf, chunk);
  }

  /** The next event, or null until more bytes arrive. */
  next(): WsEvent | null {
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) return null;
      const fin = (b[0]! & 0x80) !== 0;
      const opcode = b[0]! & 0x0f;
      const masked = (b[1]! & 0x80) !== 0;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return null;
        len = (b[2]! << 8) | b[3]!;
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return null;
        need(readU32(b, 2) === 0, "64-bit WebSocket length");
        len = readU32(b, 6);
        off = 10;
      }
      need(len <= this.#maxMessage, `WebSocket frame of ${len} bytes`);
      const maskOff = off;
      if (masked) off += 4;
      if (b.length < off + len) return null;
      const payload = b.slice(off, off + len);
      if (masked) { for (let i = 0; i < len; i++) payload[i]! ^= b[maskOff + (i & 3)]!; }
      this.#buf = b.slice(off + len);
      if (opcode === WsOpcode.Ping || opcode === WsOpcode.Pong) {
        return { kind: opcode === WsOpcode.Ping ? "ping" : "pong", data: payload };
      }
      if (opcode === WsOpcode.Close) {
        const code = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1005;
        return { kind: "close", code, reason: new TextDecoder().decode(payload.subarray(2)) };
      }
      if (opcode !== WsOpcode.Continuation) this.#binary = opcode === WsOpcode.Binary;
      this.#parts.push(payload);
      if (!fin) continue;
      const data = cat(...this.#parts);
      this.#parts = [];
      return { kind: "message", binary: this.#binary, data };
    }
  }
}
