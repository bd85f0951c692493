/**
 * @module
 * Request/reply on top of the shared reconnecting {@link RedisConn}: each
 * command gets a promise, settled by the next reply in order (RESP replies
 * come back in command order on one link).
 *
 * When the link drops, commands already written may or may not have run:
 * their promises are rejected, and the caller answers its client with an
 * error (a sender then retries its PUT, which de-duplication makes safe).
 * Commands issued while the link is down are rejected at once (an HTTP
 * client must not wait on an outage), and every command has a deadline.
 * `SELECT db` is replayed first on every (re)connect.
 */

import { encodeCommand, type Logger } from "./_deps.ts";
import { RedisConn, type RedisTarget, RespError, type RespValue } from "./_deps.ts";

/** Cap of commands waiting to be written, bytes. */
const MAX_BUFFER_BYTES = 16 * 1024 * 1024;

/** A command not answered within this long is failed (its late reply is then ignored), ms. */
export const COMMAND_TIMEOUT_MS = 5000;

interface Pending {
  resolve(v: RespValue): void;
  reject(e: Error): void;
}

/** See the module doc. */
export class RedisClient {
  readonly #conn: RedisConn;
  readonly #db: number;
  #pending: Pending[] = [];

  /** @param target server; @param log logger; @param name label for log lines */
  constructor(target: RedisTarget, log: Logger, name = "mailbox redis") {
    this.#db = target.db;
    this.#conn = new RedisConn({
      target,
      name,
      log,
      maxBufferBytes: MAX_BUFFER_BYTES,
      onReply: (v) => {
        const p = this.#pending.shift();
        if (p === undefined) return; // a reply to our PING
        if (v instanceof RespError) p.reject(new Error(`Redis: ${v.message}`));
        else p.resolve(v);
      },
      onUp: () => this.#selectFirst(),
      onDown: () => {
        // The buffer was cleared with the socket: nothing written or waiting will be answered.
        const lost = this.#pending;
        this.#pending = [];
        for (const p of lost) p.reject(new Error("Redis link lost; the command may not have run"));
      },
      onIdle: () => this.#write(["PING"], { resolve() {}, reject() {} }),
    });
  }

  /**
   * Connects (and selects the database).
   * @throws {Error} the server cannot be reached or refuses the login
   */
  async start(): Promise<void> {
    // The first connect runs onUp, which queues SELECT.
    await this.#conn.start();
    await this.#selected;
  }

  #selected: Promise<RespValue> = Promise.resolve(null);

  /** Puts `SELECT db` in front of whatever waits in the buffer. */
  #selectFirst(): void {
    if (this.#db === 0) return;
    const out = this.#conn.out;
    const waiting = out.bytes.slice(0, out.length);
    out.clear();
    const done = Promise.withResolvers<RespValue>();
    this.#selected = done.promise;
    done.promise.catch(() => {});
    this.#pending.unshift({ resolve: done.resolve, reject: done.reject });
    this.#append(encodeCommand(["SELECT", String(this.#db)]));
    this.#append(waiting);
  }

  #append(bytes: Uint8Array): boolean {
    const out = this.#conn.out;
    if (!out.fits(bytes.length)) return false;
    const off = out.reserve(bytes.length);
    out.bytes.set(bytes, off);
    out.length += bytes.length;
    return true;
  }

  #write(args: readonly (string | Uint8Array)[], p: Pending): void {
    if (!this.#append(encodeCommand(args))) {
      p.reject(new Error("Redis command buffer full"));
      return;
    }
    this.#pending.push(p);
    this.#conn.kick();
  }

  /** Runs one command; resolves with its reply. */
  command(args: readonly (string | Uint8Array)[]): Promise<RespValue> {
    if (!this.#conn.up) return Promise.reject(new Error("Redis is unreachable (reconnecting)"));
    const done = Promise.withResolvers<RespValue>();
    // Replies are matched by order, so a timed-out command keeps its place; settling twice is a no-op.
    const timer = setTimeout(
      () => done.reject(new Error(`Redis did not answer within ${COMMAND_TIMEOUT_MS} ms`)),
      COMMAND_TIMEOUT_MS,
    );
    this.#write(args, done);
    return done.promise.finally(() => clearTimeout(timer));
  }

  /** Closes the link; waiting commands are rejected. */
  async close(): Promise<void> {
    await this.#conn.close();
    const lost = this.#pending;
    this.#pending = [];
    for (const p of lost) p.reject(new Error("Redis client closed"));
  }
}
