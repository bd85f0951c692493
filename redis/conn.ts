/**
 * @module
 * One Redis connection that comes back by itself: the transport under the
 * mesh's Redis backend (`mesh/redis.ts`). Commands are written into a
 * bounded {@link OutBuffer} and flushed by one writer loop; replies and
 * pub/sub pushes go to the owner's `onReply` in order.
 *
 * - {@link RedisConn.start} makes the first connection and fails loudly
 *   (wrong address or password should stop the relay from starting).
 * - After that, a lost connection is retried with exponential backoff
 *   (50 ms doubling to 2 s, with jitter) until {@link RedisConn.close}.
 *   Bytes already handed to the dead socket are lost (a half-written
 *   command must never continue on a new one), so the output buffer is
 *   cleared and `onDown` tells the owner; commands the owner writes while
 *   the link is down wait in the buffer, up to its cap, and go out after
 *   the next `onUp`.
 * - A link silent for {@link RedisConnOptions.idleMs} gets `onIdle` (the
 *   owner sends PING); silent for three times that, it is presumed dead and
 *   reconnected, which catches a server that vanished without a FIN.
 */

import type { Logger } from "../log/mod.ts";
import { encodeCommand, OutBuffer, type RedisTarget, RespError, RespParser, type RespValue } from "./resp.ts";

/** Options of {@link RedisConn}. */
export interface RedisConnOptions {
  /** Server and credentials. */
  target: RedisTarget;
  /** Label for log lines. */
  name: string;
  /** Logger. */
  log: Logger;
  /** Cap of the output buffer, bytes: commands beyond it are refused ({@link OutBuffer.fits}). */
  maxBufferBytes: number;
  /** Deadline for connect plus AUTH, ms. Default 3000. */
  connectTimeoutMs?: number;
  /** Silence after which `onIdle` runs, ms. Default 5000. */
  idleMs?: number;
  /** Every reply or push, in order, after the handshake. */
  onReply(v: RespValue): void;
  /** The link is (again) usable; runs before buffered commands are flushed. */
  onUp(): void;
  /** The link was lost; the output buffer has been cleared. */
  onDown(): void;
  /** The link has been silent for `idleMs`: the owner should send a PING. */
  onIdle(): void;
}

/** First and longest wait between reconnect attempts, ms. */
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 2000;

function target(t: RedisTarget): string {
  return `${t.tls ? "rediss" : "redis"}://${t.hostname.includes(":") ? `[${t.hostname}]` : t.hostname}:${t.port}`;
}

/** See the module doc. */
export class RedisConn {
  /** Commands waiting to be written; the owner appends, the writer loop drains. */
  readonly out: OutBuffer;
  /** Reconnections after the first connection. */
  reconnects = 0;
  readonly #o: RedisConnOptions;
  #conn: Deno.Conn | null = null;
  #up = false;
  #closed = false;
  #writing = false;
  #lastReadAt = 0;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  #run: Promise<void> = Promise.resolve();
  #wakeBackoff: (() => void) | null = null;
  #drained: (() => void)[] = [];

  /** @param opts see {@link RedisConnOptions} */
  constructor(opts: RedisConnOptions) {
    this.#o = opts;
    this.out = new OutBuffer(opts.maxBufferBytes);
  }

  /** True while connected and authenticated. */
  get up(): boolean {
    return this.#up;
  }

  /**
   * Connects and authenticates once, then keeps the link up in the background.
   * @throws {Error} the first connection or AUTH failed
   */
  async start(): Promise<void> {
    const conn = await this.#open();
    const idle = this.#o.idleMs ?? 5000;
    this.#idleTimer = setInterval(() => this.#checkIdle(idle), idle);
    this.#run = this.#serve(conn);
  }

  /** Writes buffered commands soon (call after appending to {@link out}). */
  kick(): void {
    if (this.#up && !this.#writing && this.out.length > 0) this.#writeLoop();
  }

  /**
   * Resolves once everything buffered has been handed to the socket, or
   * after `timeoutMs`, or at once if the link is down (a shutdown waits for
   * its last notices this way, but never long).
   */
  async drain(timeoutMs: number): Promise<void> {
    if (!this.#up || this.out.length === 0) return;
    const done = Promise.withResolvers<void>();
    this.#drained.push(done.resolve);
    const t = setTimeout(done.resolve, timeoutMs);
    await done.promise;
    clearTimeout(t);
  }

  /** Closes the link and stops reconnecting. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#idleTimer);
    this.#wakeBackoff?.();
    this.#drop();
    await this.#run;
  }

  async #open(): Promise<Deno.Conn> {
    const t = this.#o.target;
    const deadline = this.#o.connectTimeoutMs ?? 3000;
    let conn: Deno.Conn | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        try {
          conn?.close();
        } catch {
          // already closed
        }
        reject(new Error(`no answer within ${deadline} ms`));
      }, deadline);
    });
    const attempt = (async () => {
      const c = t.tls
        ? await Deno.connectTls({ hostname: t.hostname, port: t.port })
        : await Deno.connect({ hostname: t.hostname, port: t.port });
      conn = c;
      if (!t.tls) (c as Deno.TcpConn).setNoDelay(true);
      await this.#handshake(c);
      return c;
    })();
    try {
      return await Promise.race([attempt, timeout]);
    } catch (e) {
      attempt.then((c) => c.close(), () => {});
      throw new Error(`Redis at ${target(t)}: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** AUTH, if credentials are configured; the answer is read here, before the owner's traffic. */
  async #handshake(c: Deno.Conn): Promise<void> {
    const t = this.#o.target;
    if (t.password === undefined) return;
    const cmd = t.username !== undefined ? ["AUTH", t.username, t.password] : ["AUTH", t.password];
    await writeAll(c, encodeCommand(cmd));
    const p = new RespParser();
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await c.read(buf);
      if (n === null) throw new Error("connection closed during AUTH");
      p.push(buf.subarray(0, n));
      const v = p.next();
      if (v === undefined) continue;
      if (v instanceof RespError) throw new Error(`AUTH refused: ${v.message}`);
      return;
    }
  }

  async #serve(first: Deno.Conn): Promise<void> {
    let conn: Deno.Conn | null = first;
    let backoff = BACKOFF_MIN_MS;
    let failing = false;
    while (!this.#closed) {
      if (conn === null) {
        try {
          conn = await this.#open();
          this.reconnects++;
          this.#o.log.info(`${this.#o.name}: reconnected to ${target(this.#o.target)}`);
          backoff = BACKOFF_MIN_MS;
          failing = false;
        } catch (e) {
          // One warning per outage; the attempts after it go to debug.
          if (!failing) this.#o.log.warn(`${this.#o.name}: ${(e as Error).message}; retrying`);
          else this.#o.log.debug(`${this.#o.name}: ${(e as Error).message}`);
          failing = true;
          await this.#sleep(backoff * (0.75 + Math.random() / 2));
          backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
          continue;
        }
      }
      if (this.#closed) {
        conn.close();
        break;
      }
      this.#conn = conn;
      this.#up = true;
      this.#lastReadAt = performance.now();
      try {
        this.#o.onUp();
      } catch (e) {
        this.#o.log.error(`${this.#o.name}: onUp failed: ${(e as Error).message}`);
      }
      this.kick();
      const why = await this.#readLoop(conn);
      this.#drop();
      this.out.clear();
      this.#o.onDown();
      conn = null;
      if (!this.#closed) this.#o.log.warn(`${this.#o.name}: link to ${target(this.#o.target)} lost: ${why}`);
    }
  }

  async #readLoop(conn: Deno.Conn): Promise<string> {
    const parser = new RespParser();
    const buf = new Uint8Array(256 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return "closed by the server";
        this.#lastReadAt = performance.now();
        parser.push(buf.subarray(0, n));
        for (let v = parser.next(); v !== undefined; v = parser.next()) this.#o.onReply(v);
      }
    } catch (e) {
      return (e as Error).message;
    }
  }

  async #writeLoop(): Promise<void> {
    const conn = this.#conn;
    if (conn === null) return;
    this.#writing = true;
    try {
      while (this.#up && this.#conn === conn && this.out.length > 0) {
        const n = await conn.write(this.out.bytes.subarray(0, this.out.length));
        // A reconnect in the meantime cleared the buffer: these bytes are not ours to consume.
        if (this.#conn !== conn) break;
        this.out.consume(n);
      }
    } catch {
      // The read loop sees the same failure and reconnects.
      this.#drop();
    } finally {
      this.#writing = false;
      if (this.out.length === 0 || this.#conn !== conn) this.#wakeDrained();
    }
    // Bytes appended after a reconnect while this loop was still finishing.
    if (this.#conn !== conn) this.kick();
  }

  #wakeDrained(): void {
    const ws = this.#drained;
    this.#drained = [];
    for (const w of ws) w();
  }

  #checkIdle(idle: number): void {
    if (!this.#up) return;
    const silent = performance.now() - this.#lastReadAt;
    if (silent >= 3 * idle) {
      this.#o.log.warn(`${this.#o.name}: no reply for ${Math.round(silent)} ms; reconnecting`);
      this.#drop();
    } else if (silent >= idle) {
      this.#o.onIdle();
      this.kick();
    }
  }

  /** Closes the socket; the read loop then ends and `#serve` reconnects (unless closed). */
  #drop(): void {
    this.#up = false;
    this.#wakeDrained();
    const c = this.#conn;
    this.#conn = null;
    try {
      c?.close();
    } catch {
      // already closed
    }
  }

  #sleep(ms: number): Promise<void> {
    const done = Promise.withResolvers<void>();
    const t = setTimeout(done.resolve, ms);
    // close() ends the wait at once.
    this.#wakeBackoff = () => {
      clearTimeout(t);
      done.resolve();
    };
    return done.promise.finally(() => this.#wakeBackoff = null);
  }
}

async function writeAll(c: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let off = 0; off < b.length;) off += await c.write(b.subarray(off));
}
