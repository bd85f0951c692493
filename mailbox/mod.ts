/**
 * @module
 * The store-and-forward mailbox for P2P Matrix servers: Dendrite's relay
 * API (`send_relay`, `relay_txn`) without its authentication holes, served
 * on the relay listener under `/_matrix/federation/v1/`.
 *
 * {@link startMailbox} opens the configured store (SQLite file in the data
 * directory, or Redis), starts the expiry sweep, and returns the handler
 * that `main.ts` mounts as a relay route.
 *
 * - `proto/`: canonical JSON, unpadded Base64, X-Matrix, identifiers, the
 *   relay API's bodies (pure);
 * - `server.ts`: the route handler; `store*.ts`: storage;
 *   `sender_limit.ts`, `metrics.ts`.
 *
 * @example
 * ```ts
 * import { startMailbox } from "./mod.ts";
 * import { configFromText } from "../config/mod.ts";
 * const dir = Deno.makeTempDirSync();
 * const { config } = configFromText(`[mailbox]\nserver_names = ["relay.example"]\ndata_dir = "${dir}"`, "inline");
 * const mailbox = await startMailbox(config.mailbox!);
 * const res = await mailbox.handle(new Request("http://relay.example/_matrix/federation/v1/relay_txn/@a:b"));
 * await mailbox.close();
 * Deno.removeSync(dir, { recursive: true });
 * if (res.status !== 401) throw new Error("an unsigned request must be refused");
 * ```
 */

import type { MailboxConfig } from "../config/mod.ts";
import { type Logger, silentLogger } from "./_deps.ts";
import { MailboxServer } from "./server.ts";
import type { MailboxStore } from "./store.ts";
import { SqliteMailboxStore } from "./store_sqlite.ts";
import { RedisMailboxStore } from "./store_redis.ts";
import type { VerifyEd25519 } from "./proto/x_matrix.ts";

export { DEFAULT_MAILBOX_LIMITS, MailboxServer, type MailboxServerOptions, webCryptoVerify } from "./server.ts";
export type { MailboxLimits } from "./server.ts";
export type { MailboxStore } from "./store.ts";
export { SqliteMailboxStore } from "./store_sqlite.ts";
export { RedisMailboxStore } from "./store_redis.ts";

/** Path prefix the mailbox serves. */
export const MAILBOX_PREFIX = "/_matrix/federation/v1/";

/** Name of the SQLite file in the data directory. */
export const SQLITE_FILE = "mailbox.sqlite3";

/** How often expired entries are swept, ms. */
export const SWEEP_INTERVAL_MS = 60_000;

/** A running mailbox. */
export interface MailboxService {
  /** Path prefix to mount {@link handle} under. */
  prefix: string;
  /** Largest request body, bytes (the listener enforces it). */
  maxBodyBytes: number;
  /** The store in use. */
  store: MailboxStore;
  /** The handler and its metrics. */
  server: MailboxServer;
  /** Answers one request (`body`: a GET body the transport carries aside). */
  handle(req: Request, body?: Uint8Array): Promise<Response>;
  /** OpenMetrics text. */
  metrics(): string;
  /** For `/healthz`. */
  status(): Record<string, unknown>;
  /** Stops the sweep and closes the store. */
  close(): Promise<void>;
}

/** Extra wiring for {@link startMailbox}. */
export interface MailboxStartOptions {
  /** Logger. */
  log?: Logger;
  /** Clock, ms since the epoch. */
  now?: () => number;
  /** Ed25519 check (default WebCrypto). */
  verify?: VerifyEd25519;
}

/**
 * Opens the store and returns the handler.
 * @throws {Error} the data directory or database cannot be opened, or Redis cannot be reached
 */
export async function startMailbox(cfg: MailboxConfig, opts: MailboxStartOptions = {}): Promise<MailboxService> {
  const log = opts.log ?? silentLogger;
  let store: MailboxStore;
  let where: string;
  if (cfg.store === "redis") {
    const t = cfg.redis!;
    store = await RedisMailboxStore.open(t, { log, prefix: cfg.redisPrefix });
    where = `redis ${t.hostname}:${t.port}/${t.db} (prefix ${cfg.redisPrefix})`;
  } else {
    try {
      await Deno.mkdir(cfg.dataDir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new Error(`mailbox data_dir ${cfg.dataDir}: ${(e as Error).message}`);
    }
    const path = `${cfg.dataDir.replace(/\/+$/, "")}/${SQLITE_FILE}`;
    store = new SqliteMailboxStore(path, { synchronous: cfg.sqliteSynchronous });
    where = `sqlite ${path} (synchronous ${cfg.sqliteSynchronous})${
      cfg.dataDirDerived ? " (default data_dir; set [mailbox] data_dir to move it)" : ""
    }`;
  }
  const server = new MailboxServer({
    store,
    serverNames: cfg.serverNames,
    limits: {
      maxEntries: cfg.maxEntriesPerRecipient,
      maxBytes: cfg.maxBytesPerRecipient,
      maxTotalBytes: cfg.maxTotalBytes,
      expiryMs: cfg.expirySecs * 1000,
      maxBodyBytes: cfg.maxBodyBytes,
      senderPerSecond: cfg.senderRatePerSecond,
      senderBurst: cfg.senderBurst,
    },
    log,
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.verify ? { verify: opts.verify } : {}),
  });
  let lastError: string | null = null;
  const sweep = async () => {
    try {
      const n = await server.sweep();
      if (n > 0) log.info(`mailbox: ${n} expired entr${n === 1 ? "y" : "ies"} deleted`);
      lastError = null;
    } catch (e) {
      lastError = (e as Error).message;
      log.warn(`mailbox: expiry sweep failed: ${lastError}`);
    }
  };
  await sweep();
  const timer = setInterval(sweep, SWEEP_INTERVAL_MS);
  Deno.unrefTimer(timer);
  log.info(
    `mailbox on ${MAILBOX_PREFIX}: ${where}; ${server.metrics.queuedEntries} entries waiting; server names ${
      cfg.serverNames.length ? cfg.serverNames.join(", ") : "(any)"
    }`,
  );
  return {
    prefix: MAILBOX_PREFIX,
    maxBodyBytes: cfg.maxBodyBytes,
    store,
    server,
    handle: (req, body) => server.handle(req, body),
    metrics: () => server.metrics.render(),
    status: () => ({
      store: store.kind,
      state: lastError === null ? "ok" : `sweep failing: ${lastError}`,
      queued_entries: server.metrics.queuedEntries,
    }),
    async close() {
      clearInterval(timer);
      await store.close();
    },
  };
}
