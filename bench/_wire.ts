/**
 * @module
 * A lean client for load generation, independent of `relay/` so that
 * optimising the relay cannot move the measuring stick.
 *
 * It speaks four kinds of connection, all carrying the same frame bytes so
 * relay and baseline runs put the same bytes on the wire:
 * - `v2`: iroh 1.x WebSocket (`iroh-relay-v2`), challenge/response (spec §3.2);
 * - `derp`: iroh 0.35 `Upgrade: iroh derp http`, 5-byte frames, ClientInfo (§3.1);
 * - `base-ws`: plain WebSocket to `baseline_ws.ts` (pairing in the query);
 * - `base-tcp`: raw TCP to `baseline_tcp.ts`, a 5-byte-framed hello, then frames.
 *
 * Cheapness:
 * - WebSocket frames are masked with the all-zero key: legal on the wire,
 *   the server still runs its unmasking code, and the client skips the XOR;
 * - bytes are read straight into one growable buffer per connection and
 *   frames handed out as offsets into it (no copies, no objects per frame);
 * - Ed25519 signing uses WebCrypto (several times faster than noble here).
 *
 * Over ~450 lines on purpose: the four connection kinds share one read
 * loop, one growable buffer and one frame writer, which are the hot path
 * the benchmark measures; splitting by kind would duplicate that loop.
 */

import { blake3 } from "@noble/hashes/blake3";

/** Connection kinds; see the module doc. */
export type Kind = "v2" | "derp" | "base-ws" | "base-tcp";

/** True if the kind carries frames in WebSocket messages. */
export function isWs(kind: Kind): boolean {
  return kind === "v2" || kind === "base-ws";
}

/** Offset of the datagram contents inside a received frame body (ws: type, key, ECN; derp: key). */
export function contentsOffset(kind: Kind): number {
  return isWs(kind) ? 1 + 32 + 1 : 32;
}

/** Key length, bytes. */
const KEY_LEN = 32;
/** The `RELAY🔑` magic of ClientInfo. */
const MAGIC = [0x52, 0x45, 0x4c, 0x41, 0x59, 0xf0, 0x9f, 0x94, 0x91];
/** BLAKE3 derive_key context of the 1.x challenge (spec §3.2). */
const CHALLENGE_CONTEXT = new TextEncoder().encode("iroh-relay handshake v1 challenge signature");

/** An endpoint identity: raw public key and WebCrypto signing key. */
export interface Identity {
  /** 32-byte Ed25519 public key. */
  pub: Uint8Array;
  /** Signing key. */
  priv: CryptoKey;
  /** The complete 0.35 ClientInfo frame (header included), signed once at creation. */
  clientInfo: Uint8Array;
}

/** Makes a fresh identity (WebCrypto key generation, about 20k/s here). */
export async function newIdentity(): Promise<Identity> {
  const pair = await crypto.subtle.generateKey("Ed25519", true, ["sign", "verify"]) as CryptoKeyPair;
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  // 0.35 signs the postcard-encoded ClientInfo {version: 3}, nothing from the server: sign it once.
  const message = Uint8Array.of(3);
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", pair.privateKey, message));
  const payloadLen = MAGIC.length + KEY_LEN + 64 + message.length;
  const frame = new Uint8Array(5 + payloadLen);
  writeDerpHeader(frame, 0, 2, payloadLen);
  frame.set(MAGIC, 5);
  frame.set(pub, 5 + MAGIC.length);
  frame.set(sig, 5 + MAGIC.length + KEY_LEN);
  frame.set(message, 5 + MAGIC.length + KEY_LEN + 64);
  return { pub, priv: pair.privateKey, clientInfo: frame };
}

/** Writes a derp header `[type][len u32 BE]` at `buf[off..]`. */
export function writeDerpHeader(buf: Uint8Array, off: number, type: number, len: number): void {
  buf[off] = type;
  buf[off + 1] = len >>> 24;
  buf[off + 2] = (len >>> 16) & 0xff;
  buf[off + 3] = (len >>> 8) & 0xff;
  buf[off + 4] = len & 0xff;
}

/** Length of a client (masked) WebSocket frame header for a `len`-byte payload. */
export function wsClientHeaderLen(len: number): number {
  return (len < 126 ? 2 : len < 65536 ? 4 : 10) + 4;
}

/** Writes a final binary client frame header with the zero mask key; returns its length. */
export function writeWsClientHeader(buf: Uint8Array, off: number, len: number, opcode = 2): number {
  buf[off] = 0x80 | opcode;
  let h: number;
  if (len < 126) {
    buf[off + 1] = 0x80 | len;
    h = 2;
  } else if (len < 65536) {
    buf[off + 1] = 0x80 | 126;
    buf[off + 2] = len >>> 8;
    buf[off + 3] = len & 0xff;
    h = 4;
  } else {
    buf[off + 1] = 0x80 | 127;
    buf.fill(0, off + 2, off + 6);
    buf[off + 6] = len >>> 24;
    buf[off + 7] = (len >>> 16) & 0xff;
    buf[off + 8] = (len >>> 8) & 0xff;
    buf[off + 9] = len & 0xff;
    h = 10;
  }
  buf.fill(0, off + h, off + h + 4); // zero mask: XOR is the identity
  return h + 4;
}

/** One complete client frame around `body` (ws: masked binary message; derp: body[0] is the type). */
export function clientFrame(kind: Kind, body: Uint8Array): Uint8Array {
  if (isWs(kind)) {
    const out = new Uint8Array(wsClientHeaderLen(body.length) + body.length);
    out.set(body, writeWsClientHeader(out, 0, body.length));
    return out;
  }
  const out = new Uint8Array(5 + body.length - 1);
  writeDerpHeader(out, 0, body[0]!, body.length - 1);
  out.set(body.subarray(1), 5);
  return out;
}

/**
 * Length of one datagram frame as the client sends it, for `n` bytes of
 * contents: 1.x `ClientToRelayDatagram` in a WebSocket message, or 0.35
 * `SendPacket` with its 5-byte header.
 */
export function datagramFrameLen(kind: Kind, n: number): number {
  if (isWs(kind)) {
    const body = 1 + KEY_LEN + 1 + n;
    return wsClientHeaderLen(body) + body;
  }
  return 5 + KEY_LEN + n;
}

/**
 * Writes one datagram frame for `dst` at `buf[off..]` and returns the offset
 * of its contents (the caller fills them).
 */
export function writeDatagramFrame(kind: Kind, buf: Uint8Array, off: number, dst: Uint8Array, n: number): number {
  if (isWs(kind)) {
    const body = 1 + KEY_LEN + 1 + n;
    off += writeWsClientHeader(buf, off, body);
    buf[off] = 4; // ClientToRelayDatagram
    buf.set(dst, off + 1);
    buf[off + 1 + KEY_LEN] = 0; // ECN: Not-ECT
    return off + 2 + KEY_LEN;
  }
  writeDerpHeader(buf, off, 4, KEY_LEN + n); // SendPacket
  buf.set(dst, off + 5);
  return off + 5 + KEY_LEN;
}

/** Called for each received frame: `type`, and the body at `buf[start..end)` (ws: whole message; derp: payload). */
export type FrameHandler = (type: number, buf: Uint8Array, start: number, end: number) => void;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A connected lean client; see the module doc. */
export class LeanConn {
  /** Connection kind. */
  readonly kind: Kind;
  readonly #conn: Deno.TcpConn;
  #buf: Uint8Array;
  #lo = 0;
  #hi = 0;
  #tail: Promise<void> = Promise.resolve();
  #closed = false;
  /** Why reading ended, once it did. */
  endReason = "";

  /** @param conn connected socket; @param kind framing; @param bufSize initial read buffer, bytes */
  constructor(conn: Deno.TcpConn, kind: Kind, bufSize: number) {
    this.#conn = conn;
    this.kind = kind;
    this.#buf = new Uint8Array(bufSize);
  }

  /** True once closed locally or by the peer. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Writes `data` after every earlier write (writes never interleave). */
  write(data: Uint8Array): Promise<void> {
    const p = this.#tail.then(async () => {
      let off = 0;
      while (off < data.length) off += await this.#conn.write(data.subarray(off));
    });
    this.#tail = p.catch(() => {});
    return p;
  }

  /** Closes the socket. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Reads more bytes into the buffer; false at EOF. Grows or compacts the buffer as needed. */
  async #fill(): Promise<boolean> {
    if (this.#lo === this.#hi) {
      this.#lo = this.#hi = 0;
    } else if (this.#buf.length - this.#hi < 2048) {
      if (this.#lo > 0) {
        this.#buf.copyWithin(0, this.#lo, this.#hi);
        this.#hi -= this.#lo;
        this.#lo = 0;
      }
      if (this.#buf.length - this.#hi < 2048) {
        const grown = new Uint8Array(this.#buf.length * 2);
        grown.set(this.#buf.subarray(0, this.#hi));
        this.#buf = grown;
      }
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#hi));
    if (n === null) return false;
    this.#hi += n;
    return true;
  }

  /**
   * Reads an HTTP response head; returns its status line and headers.
   * Bytes after the head stay buffered for the frame reader.
   */
  async readHead(): Promise<{ status: number; headers: string }> {
    for (;;) {
      const b = this.#buf;
      for (let i = this.#lo; i + 3 < this.#hi; i++) {
        if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) {
          const text = dec.decode(b.subarray(this.#lo, i));
          this.#lo = i + 4;
          return { status: Number(text.split(" ")[1]), headers: text };
        }
      }
      if (!await this.#fill()) throw new Error("Connection closed before the response head");
    }
  }

  /**
   * Splits buffered bytes into frames, calling `onFrame` for each complete
   * one. Server WebSocket frames are unmasked; pings are answered here.
   * @returns false if the peer sent a close frame
   */
  #parse(onFrame: FrameHandler): boolean {
    const b = this.#buf;
    let p = this.#lo;
    const hi = this.#hi;
    const ws = isWs(this.kind);
    for (;;) {
      const avail = hi - p;
      if (ws) {
        if (avail < 2) break;
        const opcode = b[p]! & 0x0f;
        let len = b[p + 1]! & 0x7f;
        let h = 2;
        if (len === 126) {
          if (avail < 4) break;
          len = (b[p + 2]! << 8) | b[p + 3]!;
          h = 4;
        } else if (len === 127) {
          if (avail < 10) break;
          len = ((b[p + 6]! << 24) >>> 0) + (b[p + 7]! << 16) + (b[p + 8]! << 8) + b[p + 9]!;
          h = 10;
        }
        if (avail < h + len) {
          this.#ensure(h + len);
          break;
        }
        const s = p + h;
        p = s + len;
        if (opcode === 2 && len > 0) {
          const type = b[s]!;
          // 1.x Ping (type 9, 8 bytes): answer with Pong (10), or the relay closes us after its pong timeout.
          if (type === 9 && len === 9 && this.kind === "v2") this.#pong(10, b.slice(s + 1, p));
          else onFrame(type, b, s, p);
        } else if (opcode === 9) {
          this.write(clientFrameOpcode(10, b.slice(s, p))).catch(() => {});
        } else if (opcode === 8) {
          this.#lo = p;
          return false;
        }
      } else {
        if (avail < 5) break;
        const len = ((b[p + 1]! << 24) >>> 0) + (b[p + 2]! << 16) + (b[p + 3]! << 8) + b[p + 4]!;
        if (avail < 5 + len) {
          this.#ensure(5 + len);
          break;
        }
        const type = b[p]!;
        const s = p + 5;
        p = s + len;
        // 0.35 Ping (12): answer with Pong (13).
        if (type === 12 && this.kind === "derp") this.#pong(13, b.slice(s, p));
        else onFrame(type, b, s, p);
      }
    }
    this.#lo = p;
    return true;
  }

  /** Makes sure a frame of `n` bytes fits the buffer once compacted. */
  #ensure(n: number): void {
    if (n + 2048 > this.#buf.length) {
      const grown = new Uint8Array(n + 2048);
      grown.set(this.#buf.subarray(this.#lo, this.#hi));
      this.#hi -= this.#lo;
      this.#lo = 0;
      this.#buf = grown;
    }
  }

  #pong(type: number, data: Uint8Array): void {
    const body = new Uint8Array(1 + data.length);
    body[0] = type;
    body.set(data, 1);
    this.write(clientFrame(this.kind, body)).catch(() => {});
  }

  /**
   * Returns the next frame (for handshakes), copying its body.
   * @throws {Error} if the connection ends first
   */
  async nextFrame(): Promise<{ type: number; body: Uint8Array }> {
    const got: { frame: { type: number; body: Uint8Array } | null } = { frame: null };
    for (;;) {
      if (this.#firstFrameEnd() < 0) {
        if (!await this.#fill()) throw new Error("Connection closed by the server");
        continue;
      }
      // Parse exactly one frame (pings are answered inside and yield nothing).
      const ok = this.#parseOne((type, buf, s, e) => got.frame = { type, body: buf.slice(s, e) });
      if (got.frame !== null) return got.frame;
      if (!ok) throw new Error("WebSocket closed by the server");
    }
  }

  #parseOne(onFrame: FrameHandler): boolean {
    // Temporarily hide everything after the first complete frame.
    const hi = this.#hi;
    this.#hi = this.#firstFrameEnd();
    const ok = this.#parse(onFrame);
    this.#hi = hi;
    return ok;
  }

  /** End offset of the first complete frame in the buffer, or -1. */
  #firstFrameEnd(): number {
    const b = this.#buf;
    const p = this.#lo;
    const avail = this.#hi - p;
    if (isWs(this.kind)) {
      if (avail < 2) return -1;
      let len = b[p + 1]! & 0x7f;
      let h = 2;
      if (len === 126) {
        if (avail < 4) return -1;
        len = (b[p + 2]! << 8) | b[p + 3]!;
        h = 4;
      } else if (len === 127) {
        if (avail < 10) return -1;
        len = ((b[p + 6]! << 24) >>> 0) + (b[p + 7]! << 16) + (b[p + 8]! << 8) + b[p + 9]!;
        h = 10;
      }
      return avail >= h + len ? p + h + len : -1;
    }
    if (avail < 5) return -1;
    const len = ((b[p + 1]! << 24) >>> 0) + (b[p + 2]! << 16) + (b[p + 3]! << 8) + b[p + 4]!;
    return avail >= 5 + len ? p + 5 + len : -1;
  }

  /**
   * Reads until the connection ends, handing every frame to `onFrame`.
   * Never rejects; sets {@link endReason}.
   */
  async readLoop(onFrame: FrameHandler): Promise<void> {
    try {
      for (;;) {
        if (!this.#parse(onFrame)) {
          this.endReason = "websocket close";
          break;
        }
        if (!await this.#fill()) {
          this.endReason = "eof";
          break;
        }
      }
    } catch (e) {
      this.endReason = this.#closed ? "closed" : (e as Error).message;
    }
    this.close();
  }
}

function clientFrameOpcode(opcode: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(wsClientHeaderLen(payload.length) + payload.length);
  out.set(payload, writeWsClientHeader(out, 0, payload.length, opcode));
  return out;
}

/** Options of {@link dial}. */
export interface DialOptions {
  /** Initial read buffer, bytes (idle clients: small; receivers: large). */
  bufSize?: number;
  /** Identity for relay kinds. */
  id?: Identity;
  /** Baseline kinds: this connection's id. */
  me?: number;
  /** `base-ws` senders: where this connection's messages go (base-tcp routes by the frame instead). */
  to?: number;
  /**
   * 0.35 only: send a Ping after ClientInfo and wait for the Pong, which
   * proves the relay has verified and registered us (it answers nothing else).
   */
  confirm?: boolean;
}

/**
 * Connects to `127.0.0.1:port` and performs the upgrade and authentication
 * of `kind`. For `v2` it returns after ServerConfirmsAuth; for `derp` after
 * sending ClientInfo (and the Pong, with `confirm`).
 * @throws {Error} on refusal, denial or a closed connection
 */
export async function dial(port: number, kind: Kind, opts: DialOptions = {}): Promise<LeanConn> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  tcp.setNoDelay(true);
  const c = new LeanConn(tcp, kind, opts.bufSize ?? 4096);
  try {
    await handshake(c, port, kind, opts);
  } catch (e) {
    c.close();
    throw e;
  }
  return c;
}

async function handshake(c: LeanConn, port: number, kind: Kind, opts: DialOptions): Promise<void> {
  const host = `127.0.0.1:${port}`;
  if (kind === "base-tcp") {
    // Hello: type 2, 8 bytes = our id (u32 BE) and 4 unused bytes; then plain frames.
    const hello = new Uint8Array(13);
    writeDerpHeader(hello, 0, 2, 8);
    new DataView(hello.buffer).setUint32(5, opts.me ?? 0);
    await c.write(hello);
    return;
  }
  if (kind === "derp") {
    const id = opts.id!;
    await c.write(enc.encode(`GET /relay HTTP/1.1\r\nhost: ${host}\r\nupgrade: iroh derp http\r\n\r\n`));
    const head = await c.readHead();
    if (head.status !== 101) throw new Error(`Upgrade refused: ${head.status}`);
    if (!opts.confirm) {
      await c.write(id.clientInfo);
      return;
    }
    const ping = new Uint8Array(13);
    writeDerpHeader(ping, 0, 12, 8);
    crypto.getRandomValues(ping.subarray(5));
    const both = new Uint8Array(id.clientInfo.length + ping.length);
    both.set(id.clientInfo);
    both.set(ping, id.clientInfo.length);
    await c.write(both);
    for (;;) {
      const f = await c.nextFrame();
      if (f.type === 13 && f.body.every((v, i) => v === ping[5 + i])) return;
      if (f.type === 14) throw new Error(`Relay refused: Health "${dec.decode(f.body)}"`);
    }
  }
  const key = crypto.getRandomValues(new Uint8Array(16)).toBase64();
  let path = "/relay";
  let extra = "Sec-WebSocket-Protocol: iroh-relay-v2, iroh-relay-v1\r\n";
  if (kind === "base-ws") {
    path = `/?me=${opts.me ?? 0}${opts.to !== undefined ? `&to=${opts.to}` : ""}`;
    extra = "";
  }
  await c.write(enc.encode(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
  ));
  const head = await c.readHead();
  if (head.status !== 101) throw new Error(`Upgrade refused: ${head.status}`);
  if (kind === "base-ws") return;
  const id = opts.id!;
  const ch = await c.nextFrame();
  if (ch.type !== 0 || ch.body.length !== 17) throw new Error(`Expected ServerChallenge, got type ${ch.type}`);
  const msg = blake3(ch.body.subarray(1), { context: CHALLENGE_CONTEXT });
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", id.priv, msg));
  const auth = new Uint8Array(1 + KEY_LEN + 1 + 64);
  auth[0] = 1; // ClientAuth: key, postcard length 0x40, signature
  auth.set(id.pub, 1);
  auth[1 + KEY_LEN] = 64;
  auth.set(sig, 2 + KEY_LEN);
  await c.write(clientFrame(kind, auth));
  const verdict = await c.nextFrame();
  if (verdict.type === 2) return;
  if (verdict.type === 3) throw new Error(`Relay denied auth: ${dec.decode(verdict.body.subarray(2))}`);
  throw new Error(`Expected ServerConfirmsAuth, got type ${verdict.type}`);
}
