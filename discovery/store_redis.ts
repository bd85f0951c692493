/**
 * @module
 * The store for several instances: every instance reads and writes one
 * Redis, so a packet PUT to one is answered by all (the shared client in
 * `redis/`).
 *
 * - `<prefix>:pkt:<z32>` holds the SignedPacket bytes; the sorted set
 *   `<prefix>:ts` scores each z32 by its signed timestamp, for eviction and
 *   counting.
 * - Newer-wins runs inside Redis as one Lua script, so instances racing on
 *   a key cannot go backwards. It compares `ts | dns` byte by byte (Lua's
 *   `<` on strings follows the server's collation locale, bytes do not).
 * - Replies come back in command order: a FIFO of waiting promises. When
 *   the link is down a call fails at once (DNS answers REFUSED, PUT gets
 *   500), it never waits for a reconnect; commands lost with a dropped link
 *   are failed too.
 */

import { encodeCommand, RedisConn, type RedisTarget, RespError, type RespValue } from "../redis/mod.ts";
import type { Logger } from "../log/mod.ts";
import { type SignedPacket } from "./proto/signed_packet.ts";
import { z32Encode } from "./proto/z32.ts";
import type { PacketStore, UpsertResult } from "./store.ts";

/** Cap of buffered commands, bytes (a PUT is ~1.2 kB). */
const BUFFER_BYTES = 4 * 1024 * 1024;

const UPSERT_LUA = `
local new = ARGV[1]
local old = redis.call('GET', KEYS[1])
if old then
  local a, b = string.sub(new, 97), string.sub(old, 97)
  local n = math.min(#a, #b)
  local newer = #a > #b
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then newer = x > y break end
  end
  if not newer then return 0 end
end
redis.call('SET', KEYS[1], new)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1`;

const EVICT_LUA = `
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 1000)
for _, z in ipairs(gone) do
  redis.call('DEL', ARGV[2] .. z)
  redis.call('ZREM', KEYS[1], z)
end
return #gone`;

interface Waiter {
  resolve(v: RespValue): void;
  reject(e: Error): void;
}

/** Options of {@link RedisStore}. */
export interface RedisStoreOptions {
  /** Server and credentials (from `redis_url`). */
  target: RedisTarget;
  /** Key prefix; default `iroh-dns`. */
  prefix?: string;
  /** Logger. */
  log: Logger;
}

/** See the module doc. */
export class RedisStore implements PacketStore {
  readonly kind = "redis";
  readonly #conn: RedisConn;
  readonly #prefix: string;
  readonly #waiting: Waiter[] = [];

  /** Builds the store; {@link start} connects. */
  constructor(opts: RedisStoreOptions) {
    this.#prefix = opts.prefix ?? "iroh-dns";
    this.#conn = new RedisConn({
      target: opts.target,
      name: "discovery store redis",
      log: opts.log,
      maxBufferBytes: BUFFER_BYTES,
      onReply: (v) => this.#waiting.shift()?.resolve(v),
      // The database number of `redis_url` (the shared client leaves SELECT to its users); the buffer is
      // empty here (nothing is queued while the link is down), so SELECT goes first.
      onUp: () => {
        if (opts.target.db !== 0) this.#enqueue(["SELECT", String(opts.target.db)]).catch(() => {});
      },
      onDown: () => {
        const lost = this.#waiting.splice(0);
        for (const w of lost) w.reject(new Error("redis link lost"));
      },
      onIdle: () => this.#send(["PING"]).catch(() => {}),
    });
  }

  /** Connects; rejects if Redis cannot be reached or refuses AUTH. */
  start(): Promise<void> {
    return this.#conn.start();
  }

  #send(args: (string | Uint8Array)[]): Promise<RespValue> {
    if (!this.#conn.up) return Promise.reject(new Error("redis is not connected"));
    return this.#enqueue(args);
  }

  #enqueue(args: (string | Uint8Array)[]): Promise<RespValue> {
    const cmd = encodeCommand(args);
    const out = this.#conn.out;
    if (!out.fits(cmd.length)) return Promise.reject(new Error("redis output buffer full"));
    const off = out.reserve(cmd.length);
    out.bytes.set(cmd, off);
    out.length += cmd.length;
    const p = new Promise<RespValue>((resolve, reject) => this.#waiting.push({ resolve, reject }));
    this.#conn.kick();
    return p.then((v) => {
      if (v instanceof RespError) throw v;
      return v;
    });
  }

  #key(z32: string): string {
    return `${this.#prefix}:pkt:${z32}`;
  }

  async get(key: Uint8Array): Promise<Uint8Array | null> {
    const v = await this.#send(["GET", this.#key(z32Encode(key))]);
    if (v === null) return null;
    if (v instanceof Uint8Array) return v.slice();
    throw new Error("unexpected redis reply to GET");
  }

  async upsert(p: SignedPacket): Promise<UpsertResult> {
    const z = z32Encode(p.key);
    const v = await this.#send([
      "EVAL",
      UPSERT_LUA,
      "2",
      this.#key(z),
      `${this.#prefix}:ts`,
      p.bytes,
      z,
      String(Number(p.ts)),
    ]);
    return v === 1 ? "stored" : "stale";
  }

  async evictOlderThan(cutoffUs: bigint): Promise<number> {
    let total = 0;
    // At most 1000 per script run, so one run never blocks Redis for long.
    for (let i = 0; i < 1000; i++) {
      const n = await this.#send([
        "EVAL",
        EVICT_LUA,
        "1",
        `${this.#prefix}:ts`,
        String(Number(cutoffUs)),
        `${this.#prefix}:pkt:`,
      ]);
      total += Number(n);
      if (Number(n) < 1000) break;
    }
    return total;
  }

  async count(): Promise<number> {
    return Number(await this.#send(["ZCARD", `${this.#prefix}:ts`]));
  }

  healthy(): boolean {
    return this.#conn.up;
  }

  async close(): Promise<void> {
    await this.#conn.close();
    const lost = this.#waiting.splice(0);
    for (const w of lost) w.reject(new Error("store closed"));
  }
}
