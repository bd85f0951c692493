/**
 * @module
 * The mailbox store in Redis, for several relay instances behind one name.
 * Each operation is one Lua script, so de-duplication, quota checks,
 * acknowledgement scoping and expiry are atomic across instances.
 *
 * Keys (prefix `P`, default `mailbox`):
 * - `P:next_id` counter (ids never reused); `P:e:<id>` hash
 *   {r recipient, o origin, b body, n bytes, x expires_at};
 * - `P:q:<recipient>` sorted set of ids (FIFO); `P:expiry` sorted set id → expires_at;
 * - `P:r:<recipient>` hash {entries, bytes}; `P:total` hash {entries, bytes};
 * - `P:seen:<origin>|<recipient>|<txnID>` hash {id, x expires_at}, expiring
 *   with the entry (lengths prefixed, so no two triples share a key).
 *
 * Durability is Redis's: a 200 means Redis accepted the write. Run Redis
 * with `appendonly yes` (deploy/OPERATING.md) for it to survive a Redis
 * restart; our own restarts and `kill -9` lose nothing either way.
 */

import type { Deposit, DepositLimits, DepositResult, MailboxStore, NextResult, StoreStats } from "./store.ts";
import { type Logger, type RedisTarget, respText, type RespValue } from "./_deps.ts";
import { RedisClient } from "./redis_client.ts";

// Removes one entry and its counters (the seen key stays until it expires: a retry is still a duplicate).
const REMOVE = `
local function remove(p, id)
  local ek = p .. ':e:' .. id
  local h = redis.call('HMGET', ek, 'r', 'n')
  if not h[1] then
    redis.call('ZREM', p .. ':expiry', id)
    return
  end
  local n = tonumber(h[2])
  redis.call('DEL', ek)
  redis.call('ZREM', p .. ':q:' .. h[1], id)
  redis.call('ZREM', p .. ':expiry', id)
  local rk = p .. ':r:' .. h[1]
  if redis.call('HINCRBY', rk, 'entries', -1) <= 0 then redis.call('DEL', rk) else redis.call('HINCRBY', rk, 'bytes', -n) end
  redis.call('HINCRBY', p .. ':total', 'entries', -1)
  redis.call('HINCRBY', p .. ':total', 'bytes', -n)
end
`;

const DEPOSIT = `
local p, rcpt, origin, txn, body = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local bytes, expires = tonumber(ARGV[6]), tonumber(ARGV[7])
local maxE, maxB, maxT, now = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local sk = p .. ':seen:' .. #origin .. ':' .. origin .. '|' .. #rcpt .. ':' .. rcpt .. '|' .. txn
local seen = redis.call('HMGET', sk, 'id', 'x')
if seen[1] and tonumber(seen[2]) > now then return {'duplicate', tonumber(seen[1])} end
local rk = p .. ':r:' .. rcpt
local r = redis.call('HMGET', rk, 'entries', 'bytes')
if tonumber(r[1] or '0') + 1 > maxE then return {'full', 'entries'} end
if tonumber(r[2] or '0') + bytes > maxB then return {'full', 'bytes'} end
if tonumber(redis.call('HGET', p .. ':total', 'bytes') or '0') + bytes > maxT then return {'full', 'total'} end
local id = redis.call('INCR', p .. ':next_id')
redis.call('HSET', p .. ':e:' .. id, 'r', rcpt, 'o', origin, 'b', body, 'n', bytes, 'x', expires)
redis.call('ZADD', p .. ':q:' .. rcpt, id, id)
redis.call('ZADD', p .. ':expiry', expires, id)
redis.call('HINCRBY', rk, 'entries', 1)
redis.call('HINCRBY', rk, 'bytes', bytes)
redis.call('HINCRBY', p .. ':total', 'entries', 1)
redis.call('HINCRBY', p .. ':total', 'bytes', bytes)
-- The expiry is checked against our clock above; PEXPIREAT only lets Redis reclaim the key.
redis.call('DEL', sk)
redis.call('HSET', sk, 'id', id, 'x', expires)
redis.call('PEXPIREAT', sk, expires)
return {'stored', id}
`;

const NEXT = REMOVE + `
local p, rcpt, ack, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local acked = 0
if ack > 0 and redis.call('HGET', p .. ':e:' .. ack, 'r') == rcpt then
  remove(p, ack)
  acked = 1
end
local expired = 0
local q = p .. ':q:' .. rcpt
for _ = 1, 1000 do
  local ids = redis.call('ZRANGE', q, 0, 0)
  if #ids == 0 then return {acked, expired} end
  local id = ids[1]
  local h = redis.call('HMGET', p .. ':e:' .. id, 'o', 'b', 'x')
  if not h[2] then
    redis.call('ZREM', q, id)
  elseif tonumber(h[3]) > now then
    return {acked, expired, tonumber(id), h[1], h[2]}
  else
    remove(p, id)
    expired = expired + 1
  end
end
return {acked, expired}
`;

const EXPIRE = REMOVE + `
local p, now, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', p .. ':expiry', '-inf', now, 'LIMIT', 0, max)
for _, id in ipairs(ids) do remove(p, id) end
return #ids
`;

function num(v: RespValue | undefined): number {
  if (typeof v === "number") return v;
  if (v instanceof Uint8Array || typeof v === "string") return Number(respText(v));
  return 0;
}

/** See the module doc. */
export class RedisMailboxStore implements MailboxStore {
  /** Always `redis`. */
  readonly kind = "redis";
  readonly #client: RedisClient;
  readonly #prefix: string;

  private constructor(client: RedisClient, prefix: string) {
    this.#client = client;
    this.#prefix = prefix;
  }

  /**
   * Connects to Redis.
   * @throws {Error} Redis cannot be reached or refuses the login
   */
  static async open(target: RedisTarget, opts: { log: Logger; prefix?: string }): Promise<RedisMailboxStore> {
    const client = new RedisClient(target, opts.log);
    try {
      await client.start();
      // A server that wants a password only says so on the first command.
      await client.command(["PING"]);
    } catch (e) {
      await client.close();
      throw new Error(`mailbox store: ${(e as Error).message}`);
    }
    return new RedisMailboxStore(client, opts.prefix ?? "mailbox");
  }

  async #eval(script: string, args: (string | number)[]): Promise<RespValue> {
    return await this.#client.command(["EVAL", script, "0", this.#prefix, ...args.map(String)]);
  }

  /** See {@link MailboxStore.deposit}. */
  async deposit(d: Deposit, limits: DepositLimits): Promise<DepositResult> {
    const r = await this.#eval(DEPOSIT, [
      d.recipient,
      d.origin,
      d.txnId,
      d.body,
      d.bytes,
      d.expiresAt,
      limits.maxEntries,
      limits.maxBytes,
      limits.maxTotalBytes,
      d.now,
    ]) as RespValue[];
    const status = respText(r[0]!);
    if (status === "full") return { status: "full", quota: respText(r[1]!) as "entries" | "bytes" | "total" };
    return { status: status as "stored" | "duplicate", id: num(r[1]) };
  }

  /** See {@link MailboxStore.next}. */
  async next(recipient: string, ack: number, now: number): Promise<NextResult> {
    const r = await this.#eval(NEXT, [recipient, ack, now]) as RespValue[];
    const entry = r.length >= 5 ? { id: num(r[2]), origin: respText(r[3]!), body: respText(r[4]!) } : null;
    return { acked: num(r[0]) === 1, expired: num(r[1]), entry };
  }

  /** See {@link MailboxStore.expire}. */
  async expire(now: number, max: number): Promise<number> {
    return num(await this.#eval(EXPIRE, [now, max]));
  }

  /** See {@link MailboxStore.stats}. */
  async stats(): Promise<StoreStats> {
    const r = await this.#client.command(["HMGET", `${this.#prefix}:total`, "entries", "bytes"]) as RespValue[];
    return { entries: num(r[0] ?? 0), bytes: num(r[1] ?? 0) };
  }

  /** See {@link MailboxStore.close}. */
  async close(): Promise<void> {
    await this.#client.close();
  }
}
