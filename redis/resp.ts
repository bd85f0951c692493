/**
 * @module
 * A minimal RESP2 codec (the Redis wire protocol) for the instance mesh's
 * Redis backend: commands out as arrays of binary-safe bulk strings, replies
 * and pub/sub pushes in through an incremental parser. Pure: no sockets.
 *
 * Why not an npm client: `redis` (node-redis 5.12) and `ioredis` 5.11 both
 * run under Deno 2.9 with binary-safe pub/sub (checked), but the mesh needs
 * a handful of commands (AUTH, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PING),
 * while they bring 12 MB / 1.1 MB of code with a command object, a promise
 * and a Buffer per PUBLISH, and an unbounded offline queue we would have to
 * turn off and rebuild anyway. Here a PUBLISH is written straight into one
 * reusable output buffer ({@link OutBuffer}), and a received message is a
 * view into the read buffer. Measured on the 2-core machine, loopback Redis
 * 7.0, a burst of 20,000 PUBLISHes of 1,200 bytes to one subscriber (three
 * runs each): this client (with the mesh's encoding and decoding on top)
 * 82k–87k messages/s, p50 0.6 ms; ioredis 30k–38k/s, p50 3.6–27 ms;
 * node-redis 53k–84k/s, p50 1.5–42 ms. One message at a time: p50 0.18–0.23
 * ms here, 0.26–0.29 ms with ioredis.
 *
 * Protocol: https://redis.io/docs/latest/develop/reference/protocol-spec/
 * (RESP2: `+` simple string, `-` error, `:` integer, `$` bulk, `*` array).
 */

const CR = 13;
const LF = 10;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** An error reply (`-ERR ...`). */
export class RespError extends Error {
  /** @param message the error line without the leading `-` */
  constructor(message: string) {
    super(message);
    this.name = "RespError";
  }
}

/**
 * A reply or push. Bulk strings are `Uint8Array` views into the parser's
 * buffer, valid until the next {@link RespParser.push}; simple strings are
 * strings; a null bulk or array is `null`.
 */
export type RespValue = string | number | Uint8Array | null | RespError | RespValue[];

/** Largest bulk string any parser accepts, bytes (a parser's own `maxReplyBytes` is usually lower). */
export const MAX_BULK_LEN = 8 * 1024 * 1024;
/** Largest array accepted (a SUBSCRIBE confirmation has 3 elements). */
export const MAX_ARRAY_LEN = 1024;
/**
 * Default cap of one reply, bytes, whole or still arriving (a bulk string,
 * or an array with everything in it): far above any mesh message (64 KiB +
 * header). It bounds what a misbehaving server can make us buffer: without
 * it, an array of 60 bulk strings of 8 MB each was held whole (1 GB RSS).
 */
export const DEFAULT_MAX_REPLY_BYTES = 1024 * 1024;
/** Longest line of a simple string, error or length header, bytes. */
const MAX_LINE = 64 * 1024;

/** Marks an incomplete value inside the parser. */
const MORE: unique symbol = Symbol("more");

/**
 * Incremental RESP2 parser: {@link push} socket chunks, then call
 * {@link next} until it returns `undefined`.
 */
export class RespParser {
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #pos = 0;
  readonly #maxReply: number;

  /**
   * @param opts `maxReplyBytes`: largest reply, bytes (default
   * {@link DEFAULT_MAX_REPLY_BYTES}); {@link next} throws once a reply,
   * complete or not, is larger. Feed {@link push} chunks of bounded size
   * and call {@link next} after each: the buffer then never holds more than
   * the cap plus one chunk.
   */
  constructor(opts: { maxReplyBytes?: number } = {}) {
    this.#maxReply = Math.min(opts.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES, MAX_BULK_LEN + 64);
    this.#buf = new Uint8Array(Math.min(64 * 1024, this.#maxReply));
  }

  /**
   * Appends a chunk (copied). Views returned earlier become invalid.
   */
  push(chunk: Uint8Array): void {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end + chunk.length > this.#buf.length) {
      const live = this.#end - this.#start;
      if (live + chunk.length <= this.#buf.length) {
        this.#buf.copyWithin(0, this.#start, this.#end);
      } else {
        // Doubling stops at the cap: beyond it only what actually arrived is held.
        const doubled = Math.min(this.#buf.length * 2, this.#maxReply + 64 * 1024);
        const grown = new Uint8Array(Math.max(doubled, live + chunk.length));
        grown.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = grown;
      }
      this.#start = 0;
      this.#end = live;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  /** Bytes pushed and not yet parsed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * The next complete value, or `undefined` if more bytes are needed.
   * @throws {SyntaxError} malformed input (the connection should be closed)
   */
  next(): RespValue | undefined {
    if (this.#start === this.#end) return undefined;
    this.#pos = this.#start;
    const v = this.#value();
    // Everything from #start on belongs to this one reply, complete or still arriving.
    const size = v === MORE ? this.#end - this.#start : this.#pos - this.#start;
    if (size > this.#maxReply) throw new SyntaxError(`RESP: reply larger than ${this.#maxReply} bytes`);
    if (v === MORE) return undefined;
    this.#start = this.#pos;
    return v;
  }

  #line(): number | typeof MORE {
    const buf = this.#buf;
    const limit = Math.min(this.#end, this.#pos + MAX_LINE);
    for (let i = this.#pos; i < limit - 1; i++) {
      if (buf[i] === CR) {
        if (buf[i + 1] !== LF) throw new SyntaxError("RESP: CR without LF");
        return i;
      }
    }
    if (this.#end - this.#pos >= MAX_LINE) throw new SyntaxError("RESP: line too long");
    return MORE;
  }

  #int(from: number, to: number): number {
    let i = from;
    let neg = false;
    if (this.#buf[i] === 0x2d) {
      neg = true;
      i++;
    }
    if (i === to || to - i > 15) throw new SyntaxError("RESP: bad integer");
    let n = 0;
    for (; i < to; i++) {
      const d = this.#buf[i]! - 0x30;
      if (d < 0 || d > 9) throw new SyntaxError("RESP: bad integer");
      n = n * 10 + d;
    }
    return neg ? -n : n;
  }

  #value(): RespValue | typeof MORE {
    if (this.#pos >= this.#end) return MORE;
    const type = this.#buf[this.#pos]!;
    const lineStart = this.#pos + 1;
    this.#pos = lineStart;
    const eol = this.#line();
    if (eol === MORE) return MORE;
    this.#pos = eol + 2;
    switch (type) {
      case 0x2b: // +
        return dec.decode(this.#buf.subarray(lineStart, eol));
      case 0x2d: // -
        return new RespError(dec.decode(this.#buf.subarray(lineStart, eol)));
      case 0x3a: // :
        return this.#int(lineStart, eol);
      case 0x24: { // $
        const len = this.#int(lineStart, eol);
        if (len === -1) return null;
        if (len < 0) throw new SyntaxError(`RESP: bulk length ${len} out of range`);
        // Refused from the header alone: nothing of it is waited for or buffered.
        if (len > this.#maxReply) throw new SyntaxError(`RESP: bulk string of ${len} bytes, over ${this.#maxReply}`);
        if (this.#end - this.#pos < len + 2) return MORE;
        const v = this.#buf.subarray(this.#pos, this.#pos + len);
        if (this.#buf[this.#pos + len] !== CR || this.#buf[this.#pos + len + 1] !== LF) {
          throw new SyntaxError("RESP: bulk string not followed by CRLF");
        }
        this.#pos += len + 2;
        return v;
      }
      case 0x2a: { // *
        const n = this.#int(lineStart, eol);
        if (n === -1) return null;
        if (n < 0 || n > MAX_ARRAY_LEN) throw new SyntaxError(`RESP: array length ${n} out of range`);
        const out: RespValue[] = [];
        for (let i = 0; i < n; i++) {
          const v = this.#value();
          if (v === MORE) return MORE;
          out.push(v);
        }
        return out;
      }
      default:
        throw new SyntaxError(`RESP: unknown type byte 0x${type.toString(16).padStart(2, "0")}`);
    }
  }
}

/**
 * A growable output buffer with a hard cap, written by the command
 * encoders and drained by the socket writer: unwritten bytes are
 * `bytes[0..length]`.
 */
export class OutBuffer {
  /** Storage; valid bytes are `[0, length)`. */
  bytes: Uint8Array;
  /** Bytes waiting to be written. */
  length = 0;
  /** Most bytes it may hold. */
  readonly max: number;

  /** @param max cap in bytes; @param initial first allocation */
  constructor(max: number, initial = 16 * 1024) {
    this.max = max;
    this.bytes = new Uint8Array(Math.min(initial, max));
  }

  /** True if `n` more bytes fit under the cap. */
  fits(n: number): boolean {
    return this.length + n <= this.max;
  }

  /**
   * Makes room for `n` bytes and returns the offset to write them at; the
   * caller advances {@link length}. Check {@link fits} first.
   */
  reserve(n: number): number {
    const need = this.length + n;
    if (need > this.bytes.length) {
      const grown = new Uint8Array(Math.min(this.max, Math.max(need, this.bytes.length * 2)));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    return this.length;
  }

  /** Drops the first `n` bytes (written to the socket). */
  consume(n: number): void {
    if (n >= this.length) {
      this.length = 0;
      return;
    }
    this.bytes.copyWithin(0, n, this.length);
    this.length -= n;
  }

  /** Drops everything. */
  clear(): void {
    this.length = 0;
  }
}

/** Writes the decimal digits of non-negative `n` at `off`; returns the end offset. */
export function writeDecimal(buf: Uint8Array, off: number, n: number): number {
  if (n < 10) {
    buf[off] = 0x30 + n;
    return off + 1;
  }
  const s = String(n);
  for (let i = 0; i < s.length; i++) buf[off + i] = s.charCodeAt(i);
  return off + s.length;
}

/** Digits of non-negative integer `n`. */
export function decimalLen(n: number): number {
  let len = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    len++;
  }
  return len;
}

/** Bytes of a bulk-string header `$<len>\r\n` plus its data and trailing CRLF. */
export function bulkLen(dataLen: number): number {
  return 1 + decimalLen(dataLen) + 2 + dataLen + 2;
}

/** Writes `$<len>\r\n` at `off`; returns the end offset (the caller writes the data and CRLF). */
export function writeBulkHeader(buf: Uint8Array, off: number, dataLen: number): number {
  buf[off] = 0x24;
  off = writeDecimal(buf, off + 1, dataLen);
  buf[off] = CR;
  buf[off + 1] = LF;
  return off + 2;
}

/** Writes `*<n>\r\n` at `off`; returns the end offset. */
export function writeArrayHeader(buf: Uint8Array, off: number, n: number): number {
  buf[off] = 0x2a;
  off = writeDecimal(buf, off + 1, n);
  buf[off] = CR;
  buf[off + 1] = LF;
  return off + 2;
}

/** A command as RESP bytes: an array of bulk strings (strings are sent as UTF-8). */
export function encodeCommand(args: readonly (string | Uint8Array)[]): Uint8Array {
  const parts = args.map((a) => typeof a === "string" ? enc.encode(a) : a);
  let n = 1 + decimalLen(parts.length) + 2;
  for (const p of parts) n += bulkLen(p.length);
  const out = new Uint8Array(n);
  let off = writeArrayHeader(out, 0, parts.length);
  for (const p of parts) {
    off = writeBulkHeader(out, off, p.length);
    out.set(p, off);
    off += p.length;
    out[off] = CR;
    out[off + 1] = LF;
    off += 2;
  }
  return out;
}

/** Where a Redis server is and how to log in, from a `redis://` or `rediss://` URL. */
export interface RedisTarget {
  /** `rediss://`: connect with TLS. */
  tls: boolean;
  /** Host name or IP, without brackets. */
  hostname: string;
  /** TCP port (default 6379). */
  port: number;
  /** ACL user name (Redis 6+), if any. */
  username?: string;
  /** Password for AUTH, if any. */
  password?: string;
  /** Database number from the path; pub/sub ignores it (channels are server-wide). */
  db: number;
}

/**
 * Parses `redis://[[user]:password@]host[:port][/db]` (or `rediss://` for TLS).
 * @throws {SyntaxError} with what is wrong (never the URL itself, which may hold a password)
 */
export function parseRedisUrl(text: string): RedisTarget {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    // Messages never repeat the URL: it may hold a password.
    throw new SyntaxError("not a URL");
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    throw new SyntaxError(`expected a redis:// or rediss:// URL, got "${u.protocol}//"`);
  }
  const hostname = u.hostname.replace(/^\[(.*)\]$/, "$1");
  if (hostname === "") throw new SyntaxError("the URL has no host");
  const port = u.port === "" ? 6379 : Number(u.port);
  const path = u.pathname.replace(/^\//, "");
  if (path !== "" && !/^\d{1,5}$/.test(path)) throw new SyntaxError(`database must be a number, got "/${path}"`);
  if (u.search !== "" || u.hash !== "") throw new SyntaxError("query and fragment are not supported");
  const username = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  return {
    tls: u.protocol === "rediss:",
    hostname,
    port,
    ...(username !== "" ? { username } : {}),
    ...(password !== "" ? { password } : {}),
    db: path === "" ? 0 : Number(path),
  };
}

/** Text of a bulk or simple string reply (for confirmations and errors). */
export function respText(v: RespValue): string {
  if (v instanceof Uint8Array) return dec.decode(v);
  if (v instanceof RespError) return v.message;
  if (Array.isArray(v)) return `[${v.map(respText).join(", ")}]`;
  return String(v);
}
