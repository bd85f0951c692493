/**
 * @module
 * The attacker's wire vocabulary, written from the specs (iroh-relay
 * protocol §1.2, §2, §3; RFC 6455 §5.2; RFC 8446 §4.1.2) and NOT from the
 * relay's own codecs: if a codec and the server share a bug, an attack built
 * on that codec would share it too.
 *
 * Only what the attacks and the legitimate probes need: upgrade requests of
 * the three client kinds, masked WebSocket frames (any length encoding),
 * derp frames, a signed 0.35 ClientInfo, and a TLS 1.3 ClientHello.
 */

import { ed25519 } from "@noble/curves/ed25519";

const enc = new TextEncoder();

/** Concatenates byte arrays. */
export function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Which upgrade: 0.35 derp, 0.35 WebSocket (no subprotocol), 1.x WebSocket. */
export type UpgradeKind = "derp" | "ws035" | "v1x";

/** The HTTP request that upgrades `/relay` for `kind` (spec §1.2, exact client requests). */
export function upgradeRequest(kind: UpgradeKind, host = "localhost"): string {
  if (kind === "derp") return `GET /relay HTTP/1.1\r\nhost: ${host}\r\nupgrade: iroh derp http\r\n\r\n`;
  const proto = kind === "v1x" ? "sec-websocket-protocol: iroh-relay-v2, iroh-relay-v1\r\n" : "";
  return `GET /relay HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${proto}\r\n`;
}

/** Index just past the first CRLFCRLF, or -1. */
export function headEnd(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i + 4;
  }
  return -1;
}

/** WebSocket opcodes (RFC 6455 §5.2). */
export const WS = { binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/**
 * A client-to-server WebSocket frame header (FIN set, MASK set, zero masking
 * key so the payload goes unchanged) announcing `length` bytes; `form`
 * forces the 7-bit, 16-bit or 64-bit length encoding.
 */
export function wsHeader(opcode: number, length: number | bigint, form?: 7 | 16 | 64): Uint8Array {
  const len = BigInt(length);
  const f = form ?? (len < 126n ? 7 : len < 65536n ? 16 : 64);
  const first = 0x80 | opcode;
  if (f === 7) return Uint8Array.of(first, 0x80 | Number(len), 0, 0, 0, 0);
  if (f === 16) return Uint8Array.of(first, 0x80 | 126, Number(len >> 8n) & 0xff, Number(len) & 0xff, 0, 0, 0, 0);
  const h = new Uint8Array(14);
  h[0] = first;
  h[1] = 0x80 | 127;
  new DataView(h.buffer).setBigUint64(2, len);
  return h;
}

/** A whole masked (zero key) client frame. */
export function wsFrame(opcode: number, payload: Uint8Array): Uint8Array {
  return cat(wsHeader(opcode, payload.length), payload);
}

/** Derp frame types used here (spec §2.2). */
export const DERP = { clientInfo: 2, sendPacket: 4, recvPacket: 5, ping: 12, pong: 13 } as const;

/** A derp frame header `[type][len u32 BE]` announcing `length` (may lie). */
export function derpHeader(type: number, length: number): Uint8Array {
  const h = new Uint8Array(5);
  h[0] = type;
  new DataView(h.buffer).setUint32(1, length);
  return h;
}

/** A whole derp frame. */
export function derpFrame(type: number, payload: Uint8Array): Uint8Array {
  return cat(derpHeader(type, payload.length), payload);
}

/** `RELAY🔑` (spec §2.2 ClientInfo magic). */
const MAGIC = Uint8Array.of(0x52, 0x45, 0x4c, 0x41, 0x59, 0xf0, 0x9f, 0x94, 0x91);

/** A fresh Ed25519 identity. */
export function newIdentity(): { secret: Uint8Array; key: Uint8Array } {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  return { secret, key: ed25519.getPublicKey(secret) };
}

/** The 0.35 ClientInfo payload: magic, key, signature over postcard `{version: 3}` = `03`, message (spec §2.2, §3.1). */
export function clientInfoPayload(secret: Uint8Array): Uint8Array {
  const message = Uint8Array.of(3);
  return cat(MAGIC, ed25519.getPublicKey(secret), ed25519.sign(message, secret), message);
}

/** Encodes `text` as bytes. */
export function bytes(text: string): Uint8Array {
  return enc.encode(text);
}

/**
 * A TLS 1.3 ClientHello record (RFC 8446 §4.1.2) for `serverName`: x25519
 * key share (random bytes are a valid x25519 public value), the usual
 * signature algorithms. A server answers it with its ServerHello and then
 * waits for our Finished, which never comes.
 */
export function clientHello(serverName = "localhost"): Uint8Array {
  const u16 = (n: number) => Uint8Array.of(n >> 8, n & 0xff);
  const ext = (type: number, body: Uint8Array) => cat(u16(type), u16(body.length), body);
  const name = bytes(serverName);
  const sni = ext(0x0000, cat(u16(name.length + 3), Uint8Array.of(0), u16(name.length), name));
  const groups = ext(0x000a, cat(u16(4), u16(0x001d), u16(0x0017)));
  const sigs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0807];
  const sigAlgs = ext(0x000d, cat(u16(sigs.length * 2), ...sigs.map(u16)));
  const versions = ext(0x002b, Uint8Array.of(4, 0x03, 0x04, 0x03, 0x03));
  const share = crypto.getRandomValues(new Uint8Array(32));
  const keyShare = ext(0x0033, cat(u16(36), u16(0x001d), u16(32), share));
  const pskModes = ext(0x002d, Uint8Array.of(1, 1));
  const extensions = cat(sni, groups, sigAlgs, versions, keyShare, pskModes);
  const suites = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8];
  const body = cat(
    u16(0x0303),
    crypto.getRandomValues(new Uint8Array(32)),
    Uint8Array.of(32),
    crypto.getRandomValues(new Uint8Array(32)),
    cat(u16(suites.length * 2), ...suites.map(u16)),
    Uint8Array.of(1, 0),
    u16(extensions.length),
    extensions,
  );
  const handshake = cat(Uint8Array.of(1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff), body);
  return cat(Uint8Array.of(0x16, 0x03, 0x01), u16(handshake.length), handshake);
}
