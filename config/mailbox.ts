/**
 * @module
 * The `[mailbox]` table: the store-and-forward mailbox for P2P Matrix
 * servers (`mailbox/`), and the default data directory it shares with
 * `[discovery]`. Pure.
 */

import { parseRedisUrl, type RedisTarget } from "../redis/mod.ts";
import { DEFAULT_REDIS_URL, MESH_NAME } from "./mesh.ts";
import { ConfigError, type Reader } from "./reader.ts";

/**
 * `[mailbox]`: the store-and-forward mailbox for P2P Matrix servers
 * (Dendrite's relay API), served on the relay listener.
 */
export interface MailboxConfig {
  /** Names accepted as X-Matrix `destination`; empty: any (a warning says so). */
  serverNames: string[];
  /** Most entries waiting for one recipient. */
  maxEntriesPerRecipient: number;
  /** Most bytes waiting for one recipient. */
  maxBytesPerRecipient: number;
  /** Most bytes all mailboxes together may hold. */
  maxTotalBytes: number;
  /** Largest request body, bytes. */
  maxBodyBytes: number;
  /** Unread entries are deleted after this long, seconds. */
  expirySecs: number;
  /** Deposits per second per sender. */
  senderRatePerSecond: number;
  /** Deposits a sender may make at once. */
  senderBurst: number;
  /** Where entries live: embedded SQLite (one instance) or Redis (several). */
  store: "sqlite" | "redis";
  /** Redis server (store = "redis"). */
  redis?: RedisTarget;
  /** Prefix of the Redis keys. */
  redisPrefix: string;
  /** Directory of the SQLite file (store = "sqlite"). */
  dataDir: string;
  /** SQLite commit durability: `normal` survives kill -9, `full` also power loss (fsync per deposit). */
  sqliteSynchronous: "normal" | "full";
  /** True if {@link dataDir} is the default rather than configured. */
  dataDirDerived: boolean;
}

/**
 * The data directory used when none is configured: systemd's
 * `$STATE_DIRECTORY` (the unit sets `StateDirectory=`), else
 * `$XDG_STATE_HOME/iroh-relay-deno`, else `~/.local/state/iroh-relay-deno`,
 * else `./data`.
 */
export function defaultDataDir(env: Record<string, string | undefined>): string {
  const state = env["STATE_DIRECTORY"]?.split(":")[0];
  if (state) return state;
  if (env["XDG_STATE_HOME"]) return `${env["XDG_STATE_HOME"]}/iroh-relay-deno`;
  if (env["HOME"]) return `${env["HOME"]}/.local/state/iroh-relay-deno`;
  return "./data";
}

/** Server names in `[mailbox] server_names`: printable, no spaces or quotes (they go into headers and logs). */
const SERVER_NAME = /^[A-Za-z0-9.:[\]-]{1,255}$/;

/** Reads `[mailbox]`; undefined when the table is absent. */
export function readMailbox(
  r: Reader,
  readers: Reader[],
  env: Record<string, string | undefined>,
  warnings: string[],
): MailboxConfig | undefined {
  const m = r.table("mailbox");
  if (!m) return undefined;
  readers.push(m);
  const serverNames = m.strings("server_names") ?? [];
  for (const n of serverNames) {
    if (!SERVER_NAME.test(n)) throw new ConfigError("mailbox.server_names", `"${n}" is not a server name`);
  }
  if (serverNames.length === 0) {
    warnings.push(
      "mailbox.server_names: empty, so any X-Matrix destination is accepted; list the names senders use for this relay",
    );
  }
  const store = m.oneOf("store", ["sqlite", "redis"] as const, "sqlite");
  if (m.has("redis_url") && store !== "redis") {
    throw new ConfigError("mailbox.redis_url", `only applies to store = "redis" (store is "${store}")`);
  }
  let redis: RedisTarget | undefined;
  const fileUrl = m.str("redis_url");
  if (store === "redis") {
    const fromEnv = env["IROH_RELAY_MAILBOX_REDIS_URL"];
    try {
      redis = parseRedisUrl(fromEnv ?? fileUrl ?? DEFAULT_REDIS_URL);
    } catch (e) {
      throw new ConfigError(
        fromEnv !== undefined ? "IROH_RELAY_MAILBOX_REDIS_URL" : "mailbox.redis_url",
        (e as Error).message,
      );
    }
  }
  const redisPrefix = m.str("redis_prefix") ?? "mailbox";
  if (!MESH_NAME.test(redisPrefix)) {
    throw new ConfigError("mailbox.redis_prefix", `expected 1 to 64 of A-Z a-z 0-9 . _ : -, got "${redisPrefix}"`);
  }
  const dataDirSet = m.str("data_dir");
  if (dataDirSet === "") throw new ConfigError("mailbox.data_dir", "must not be empty (omit it for the default)");
  const MiB = 1024 * 1024;
  const maxBytesPerRecipient = m.int("max_bytes_per_recipient", { min: 1024 }) ?? 16 * MiB;
  const maxTotalBytes = m.int("max_total_bytes", { min: 1024 }) ?? 1024 * MiB;
  if (maxTotalBytes < maxBytesPerRecipient) {
    throw new ConfigError("mailbox.max_total_bytes", "must be at least max_bytes_per_recipient");
  }
  return {
    serverNames,
    maxEntriesPerRecipient: m.int("max_entries_per_recipient", { min: 1 }) ?? 1000,
    maxBytesPerRecipient,
    maxTotalBytes,
    // The Redis client refuses bulk replies over 8 MiB; a Matrix transaction is 50 PDUs of at most 64 KiB.
    maxBodyBytes: m.int("max_body_bytes", { min: 1024, max: 8 * MiB }) ?? MiB,
    expirySecs: m.int("expiry_secs", { min: 1 }) ?? 7 * 24 * 3600,
    senderRatePerSecond: m.num("sender_rate_per_second", { min: 0.001 }) ?? 20,
    senderBurst: m.int("sender_burst", { min: 1 }) ?? 200,
    store,
    ...(redis ? { redis } : {}),
    redisPrefix,
    dataDir: dataDirSet ?? defaultDataDir(env),
    sqliteSynchronous: m.oneOf("sqlite_synchronous", ["normal", "full"] as const, "normal"),
    dataDirDerived: dataDirSet === undefined,
  };
}
