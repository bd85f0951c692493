/**
 * @module
 * The limit baseline of the 1.x WebSocket path (issue 14): a WebSocket
 * forwarder on raw TCP built the way the relay's raw transport is, minus
 * everything that makes it a relay (no authentication, no routing by key,
 * no queue limits, no counters).
 *
 * - HTTP: one request head per connection, `GET /?me=A&to=B` with the usual
 *   upgrade headers; answered with a 101 (`node:crypto` SHA-1, as the relay).
 *   Pairing comes from the query, as in `baseline_ws.ts`.
 * - Frames: client frames are parsed in the read buffer (256 KiB reads) and
 *   unmasked in place, 4 bytes at a time; each binary message is copied once,
 *   with a server (unmasked) header, into the peer's output buffer.
 * - Writes: after each read, every peer that got bytes is flushed with one
 *   write call per batch (a writer per connection: while a write is in
 *   flight new bytes gather in a second buffer and go in the next write).
 *   A sender whose peer has more than {@link MAX_PENDING} bytes waiting stops
 *   reading until it drains (backpressure instead of the relay's tail drop).
 * - Pings are answered; a close frame closes.
 *
 * Prints `{"event":"listening","port":N}`.
 */

import { createHash } from "node:crypto";

/** Read size, bytes (the relay's). */
const READ_SIZE = 256 * 1024;
/** Largest message accepted, bytes. */
const MAX_MESSAGE = 1 << 20;
/** Bytes waiting for one receiver before its senders stop reading. */
const MAX_PENDING = 1 << 20;

const enc = new TextEncoder();
const dec = new TextDecoder();
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** One upgraded connection and its output side. */
class Peer {
  readonly conn: Deno.TcpConn;
  /** Bytes gathered for the next write. */
  out = new Uint8Array(64 * 1024);
  outLen = 0;
  /** The buffer being written (swapped with {@link out}). */
  spare = new Uint8Array(64 * 1024);
  writing = false;
  dead = false;
  #drained: (() => void)[] = [];

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /** Room for `n` more bytes in {@link out}; returns the offset to write at. */
  reserve(n: number): number {
    if (this.outLen + n > this.out.length) {
      const grown = new Uint8Array(Math.max(this.out.length * 2, this.outLen + n));
      grown.set(this.out.subarray(0, this.outLen));
      this.out = grown;
    }
    const at = this.outLen;
    this.outLen += n;
    return at;
  }

  /** Starts the writer if it is idle. */
  flush(): void {
    if (!this.writing && this.outLen > 0 && !this.dead) this.#write();
  }

  /** Resolves once fewer than {@link MAX_PENDING} bytes wait (or the peer is gone). */
  drained(): Promise<void> {
    if (this.outLen <= MAX_PENDING || this.dead) return Promise.resolve();
    return new Promise((r) => this.#drained.push(r));
  }

  async #write(): Promise<void> {
    this.writing = true;
    try {
      while (this.outLen > 0) {
        const buf = this.out;
        const len = this.outLen;
        this.out = this.spare;
        this.outLen = 0;
        this.spare = buf;
        let off = 0;
        while (off < len) off += await this.conn.write(buf.subarray(off, len));
        if (this.#drained.length > 0 && this.outLen <= MAX_PENDING) this.#wake();
      }
    } catch {
      this.dead = true;
      this.outLen = 0;
    } finally {
      this.writing = false;
      this.#wake();
    }
  }

  #wake(): void {
    const w = this.#drained;
    this.#drained = [];
    for (const f of w) f();
  }
}

/** Connections by their `me` id. */
const peers = new Map<string, Peer>();

/** XORs `b[s..e)` with the mask at `b[m..m+4)`, in place; the aligned middle a word at a time. */
function unmask(b: Uint8Array, s: number, e: number, m: number): void {
  const k = [b[m]!, b[m + 1]!, b[m + 2]!, b[m + 3]!];
  let i = s;
  for (; i < e && ((b.byteOffset + i) & 3) !== 0; i++) b[i] = b[i]! ^ k[(i - s) & 3]!;
  const words = (e - i) >>> 2;
  if (words > 0) {
    const ph = (i - s) & 3;
    const w0 = k[ph]!, w1 = k[(ph + 1) & 3]!, w2 = k[(ph + 2) & 3]!, w3 = k[(ph + 3) & 3]!;
    const w = LITTLE_ENDIAN ? (w0 | (w1 << 8) | (w2 << 16) | (w3 << 24)) : ((w0 << 24) | (w1 << 16) | (w2 << 8) | w3);
    const u = new Uint32Array(b.buffer, b.byteOffset + i, words);
    for (let j = 0; j < words; j++) u[j] = u[j]! ^ w;
    i += words << 2;
  }
  for (; i < e; i++) b[i] = b[i]! ^ k[(i - s) & 3]!;
}

/** Appends a server frame (`opcode`, payload `b[s..e)`) to `p`'s output. */
function frameTo(p: Peer, opcode: number, b: Uint8Array, s: number, e: number): void {
  const len = e - s;
  const h = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const at = p.reserve(h + len);
  const o = p.out;
  o[at] = 0x80 | opcode;
  if (h === 2) o[at + 1] = len;
  else if (h === 4) {
    o[at + 1] = 126;
    o[at + 2] = len >>> 8;
    o[at + 3] = len & 0xff;
  } else {
    o[at + 1] = 127;
    o.fill(0, at + 2, at + 6);
    o[at + 6] = len >>> 24;
    o[at + 7] = (len >>> 16) & 0xff;
    o[at + 8] = (len >>> 8) & 0xff;
    o[at + 9] = len & 0xff;
  }
  o.set(b.subarray(s, e), at + h);
}

async function serve(conn: Deno.TcpConn): Promise<void> {
  conn.setNoDelay(true);
  let buf = new Uint8Array(READ_SIZE);
  let hi = 0;
  let me = "";
  let self: Peer | null = null;
  try {
    // Request head.
    let headEnd = -1;
    while (headEnd < 0) {
      const n = await conn.read(buf.subarray(hi));
      if (n === null) return;
      hi += n;
      for (let i = 0; i + 3 < hi; i++) {
        if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) {
          headEnd = i + 4;
          break;
        }
      }
      if (headEnd < 0 && hi > 8192) return;
    }
    const head = dec.decode(buf.subarray(0, headEnd));
    const target = head.slice(head.indexOf(" ") + 1, head.indexOf(" HTTP/"));
    const q = new URLSearchParams(target.slice(target.indexOf("?") + 1));
    me = q.get("me") ?? "";
    const to = q.get("to");
    const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)?.[1] ?? "";
    const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
    self = new Peer(conn);
    peers.set(me, self);
    await conn.write(enc.encode(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    ));
    buf.copyWithin(0, headEnd, hi);
    hi -= headEnd;
    // Frames.
    for (;;) {
      let p = 0;
      let target: Peer | undefined;
      for (;;) {
        const avail = hi - p;
        if (avail < 6) break;
        const opcode = buf[p]! & 0x0f;
        let len = buf[p + 1]! & 0x7f;
        let h = 2;
        if (len === 126) {
          if (avail < 8) break;
          len = (buf[p + 2]! << 8) | buf[p + 3]!;
          h = 4;
        } else if (len === 127) {
          if (avail < 14) break;
          len = ((buf[p + 6]! << 24) >>> 0) + (buf[p + 7]! << 16) + (buf[p + 8]! << 8) + buf[p + 9]!;
          h = 10;
        }
        if (len > MAX_MESSAGE) return;
        if (avail < h + 4 + len) break;
        const s = p + h + 4;
        const e = s + len;
        unmask(buf, s, e, p + h);
        p = e;
        if (opcode === 2) {
          if (target === undefined && to !== null) target = peers.get(to);
          if (target !== undefined && !target.dead) frameTo(target, 2, buf, s, e);
        } else if (opcode === 9) {
          frameTo(self, 10, buf, s, e);
          self.flush();
        } else if (opcode === 8) return;
      }
      if (target !== undefined) {
        target.flush();
        await target.drained();
      }
      buf.copyWithin(0, p, hi);
      hi -= p;
      if (buf.length - hi < 2048) {
        const grown = new Uint8Array(buf.length * 2);
        grown.set(buf.subarray(0, hi));
        buf = grown;
      }
      const n = await conn.read(buf.subarray(hi));
      if (n === null) return;
      hi += n;
    }
  } catch {
    // peer gone
  } finally {
    if (self !== null) self.dead = true;
    if (peers.get(me) === self) peers.delete(me);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

if (import.meta.main) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(JSON.stringify({ event: "listening", port: (listener.addr as Deno.NetAddr).port }));
  for await (const conn of listener) serve(conn);
}
