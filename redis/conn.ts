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
 *   and jitter (50 ms doubling to 5 s) until {@link RedisConn.close}. A
 *   connection counts as made only after a PING round trip (after AUTH),
 *   and the backoff resets only after the link then stayed up for
 *   {@link RedisConnOptions.healthyMs}: a server that accepts and drops
 *   (`maxclients` reached, a reply cut off, a proxy in front of a dead
 *   Redis) keeps the backoff growing instead of being reconnected to tens of
 *   thousands of times a second. Log lines are bounded: one per backoff
 *   step while it grows (two if the attempt connected: reconnected, then
 *   lost), then one summary a minute while it keeps failing, and one when
 *   the link is healthy again.
 *   Bytes already handed to the dead socket are lost (a half-written
 *   command must never continue on a new one), so the output buffer is
 *   cleared and `onDown` tells the owner; commands the owner writes while
 *   the link is down wait in the buffer, up to its cap, and go out after
 *   the next `onUp`.
 * - Replies are parsed with a cap ({@link RedisConnOptions.maxReplyBytes}):
 *   a larger one, complete or still arriving, drops the connection with an
 *   error saying so, so a misbehaving server cannot make us buffer without
 *   bound.
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
  /** Deadline for connect, AUTH and the first PING, ms. Default 3000. */
  connectTimeoutMs?: number;
  /** Largest reply accepted, bytes. Default {@link DEFAULT_MAX_REPLY_BYTES} (1 MiB). */
  maxReplyBytes?: number;
  /** First wait before reconnecting after a failure, ms. Default 50. */
  backoffMinMs?: number;
  /** Longest wait between reconnect attempts, ms. Default 5000. */
  backoffMaxMs?: number;
  /** Time a link must stay up before the backoff resets, ms. Default 5000. */
  healthyMs?: number;
  /** Clock, ms. Default `performance.now`. */
  now?: () => number;
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

/** First wait before reconnecting after a failure, ms. */
export const REDIS_BACKOFF_MIN_MS = 50;
/** Longest wait between reconnect attempts, ms: a Redis restart is noticed within this. */
export const REDIS_BACKOFF_MAX_MS = 5000;
/** Time a link must stay up before it counts as healthy and the backoff resets, ms. */
export const REDIS_HEALTHY_MS = 5000;
/** While reconnecting at the longest backoff, one summary line per this period, ms. */
const FAILING_SUMMARY_MS = 60_000;

function target(t: RedisTarget): string {
  return `${t.tls ? "rediss" : "redis"}://${t.hostname.includes(":") ? `[${t.hostname}]` : t.hostname}:${t.port}`;
}

/** See the module doc. */
export class RedisConn {
  /** Commands waiting to be written; the owner appends, the writer loop drains. */
  readonly out: OutBuffer;
  /** Successful reconnections after the first connection. */
  reconnects = 0;
  /** Connection attempts after the link was lost, successful or not (`redis_reconnects_total`). */
  reconnectAttempts = 0;
  readonly #o: RedisConnOptions;
  readonly #now: () => number;
  readonly #backoffMin: number;
  readonly #backoffMax: number;
  readonly #healthyMs: number;
  #conn: Deno.Conn | null = null;
  #up = false;
  /** When the current link passed its handshake. */
  #upAt = 0;
  /** Failed attempts (connect failures and links lost before healthy) since the link was last healthy. */
  #failures = 0;
  /** When the first of those failures happened. */
  #failingSince = 0;
  /** Failures at the longest backoff not yet reported, and when the last summary was written. */
  #unreported = 0;
  #lastSummaryAt = 0;
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
    this.#now = opts.now ?? (() => performance.now());
    this.#backoffMin = opts.backoffMinMs ?? REDIS_BACKOFF_MIN_MS;
    this.#backoffMax = opts.backoffMaxMs ?? REDIS_BACKOFF_MAX_MS;
    this.#healthyMs = opts.healthyMs ?? REDIS_HEALTHY_MS;
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
    const first = await this.#open();
    const idle = this.#o.idleMs ?? 5000;
    this.#idleTimer = setInterval(() => this.#checkIdle(idle), Math.min(idle, this.#healthyMs));
    this.#run = this.#serve(first);
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

  async #open(): Promise<Link> {
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
      try {
        if (!t.tls) (c as Deno.TcpConn).setNoDelay(true);
        return { conn: c, parser: await this.#handshake(c) };
      } catch (e) {
        // Refused (maxclients, wrong password) or cut off: this socket is ours to close.
        try {
          c.close();
        } catch {
          // closed by the timeout already
        }
        throw e;
      }
    })();
    try {
      return await Promise.race([attempt, timeout]);
    } catch (e) {
      attempt.then((l) => l.conn.close(), () => {});
      throw new Error(`Redis at ${target(t)}: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * AUTH, if credentials are configured, then PING; both answers are read
   * here, before the owner's traffic. The PING round trip is what makes a
   * connection count as made: Redis at `maxclients` accepts the TCP
   * connection, sends `-ERR max number of clients reached` and closes it.
   * @returns the parser, which may hold bytes that arrived after the PONG
   */
  async #handshake(c: Deno.Conn): Promise<RespParser> {
    const t = this.#o.target;
    const cmds: string[][] = [];
    if (t.password !== undefined) {
      cmds.push(t.username !== undefined ? ["AUTH", t.username, t.password] : ["AUTH", t.password]);
    }
    cmds.push(["PING"]);
    await writeAll(c, concat(cmds.map(encodeCommand)));
    const p = this.#parser();
    const buf = new Uint8Array(4096);
    for (let answered = 0; answered < cmds.length;) {
      const v = p.next();
      if (v === undefined) {
        const n = await c.read(buf);
        if (n === null) throw new Error(`connection closed during ${cmds[answered]![0]}`);
        p.push(buf.subarray(0, n));
        continue;
      }
      const what = cmds[answered++]![0];
      if (v instanceof RespError) throw new Error(`${what} refused: ${v.message}`);
    }
    return p;
  }

  #parser(): RespParser {
    return new RespParser(this.#o.maxReplyBytes !== undefined ? { maxReplyBytes: this.#o.maxReplyBytes } : {});
  }

  async #serve(first: Link): Promise<void> {
    let link: Link | null = first;
    /** Next wait before an attempt; 0 after a healthy link (reconnect at once). */
    let backoff = 0;
    while (!this.#closed) {
      if (link === null) {
        if (backoff > 0) await this.#sleep(backoff * (0.5 + Math.random() / 2));
        if (this.#closed) break;
        this.reconnectAttempts++;
        try {
          link = await this.#open();
          this.reconnects++;
          // Bounded like the failures: at the longest backoff, only the summary speaks.
          if (backoff < this.#backoffMax) this.#o.log.info(`${this.#o.name}: reconnected to ${target(this.#o.target)}`);
        } catch (e) {
          backoff = this.#failed((e as Error).message, backoff);
          continue;
        }
      }
      if (this.#closed) {
        link.conn.close();
        break;
      }
      const { conn, parser } = link;
      link = null;
      this.#conn = conn;
      this.#up = true;
      this.#upAt = this.#now();
      this.#lastReadAt = this.#upAt;
      try {
        this.#o.onUp();
      } catch (e) {
        this.#o.log.error(`${this.#o.name}: onUp failed: ${(e as Error).message}`);
      }
      this.kick();
      const why = await this.#readLoop(conn, parser);
      this.#drop();
      this.out.clear();
      this.#o.onDown();
      if (this.#closed) break;
      if (this.#now() - this.#upAt >= this.#healthyMs) {
        this.#markHealthy();
        backoff = 0;
        this.#o.log.warn(`${this.#o.name}: link to ${target(this.#o.target)} lost: ${why}; reconnecting`);
      } else {
        // Up, but not for long: the same as a failed attempt, so the backoff keeps growing.
        backoff = this.#failed(`link lost after ${Math.round(this.#now() - this.#upAt)} ms: ${why}`, backoff);
      }
    }
  }

  /**
   * Records a failed attempt, logs it within bounds, and returns the next
   * backoff: one line per step while the backoff grows, then a summary per
   * {@link FAILING_SUMMARY_MS} at the longest backoff.
   */
  #failed(why: string, backoff: number): number {
    const now = this.#now();
    if (this.#failures++ === 0) this.#failingSince = now;
    const next = backoff === 0 ? this.#backoffMin : Math.min(this.#backoffMax, backoff * 2);
    const name = this.#o.name;
    if (backoff < this.#backoffMax) {
      this.#o.log.warn(`${name}: ${why}; attempt ${this.#failures} failed, retrying in about ${next} ms`);
      this.#lastSummaryAt = now;
    } else if (now - this.#lastSummaryAt >= FAILING_SUMMARY_MS) {
      const n = this.#unreported + 1;
      this.#o.log.warn(
        `${name}: still failing: ${n} more failed attempt${n === 1 ? "" : "s"} in the last ${
          Math.round((now - this.#lastSummaryAt) / 1000)
        } s (last: ${why}); retrying every ${this.#backoffMax} ms or so`,
      );
      this.#unreported = 0;
      this.#lastSummaryAt = now;
    } else {
      this.#unreported++;
    }
    return next;
  }

  /** The link stayed up long enough: the outage (if any) is over. */
  #markHealthy(): void {
    if (this.#failures === 0) return;
    const secs = Math.round((this.#now() - this.#failingSince) / 1000);
    this.#o.log.info(
      `${this.#o.name}: link to ${target(this.#o.target)} healthy again after ${this.#failures} failed attempt${
        this.#failures === 1 ? "" : "s"
      } over ${secs} s`,
    );
    this.#failures = 0;
    this.#unreported = 0;
  }

  async #readLoop(conn: Deno.Conn, parser: RespParser): Promise<string> {
    const buf = new Uint8Array(256 * 1024);
    try {
      for (let v = parser.next(); v !== undefined; v = parser.next()) this.#o.onReply(v);
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return "closed by the server";
        this.#lastReadAt = this.#now();
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
    if (this.#failures > 0 && this.#now() - this.#upAt >= this.#healthyMs) this.#markHealthy();
    const silent = this.#now() - this.#lastReadAt;
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

/** A connection that passed its handshake, and the parser holding what arrived after it. */
interface Link {
  conn: Deno.Conn;
  parser: RespParser;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

async function writeAll(c: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let off = 0; off < b.length;) off += await c.write(b.subarray(off));
}
