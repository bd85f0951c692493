/**
 * @module
 * The embedded mailbox store: SQLite through Deno's built-in `node:sqlite`,
 * one file in the data directory, WAL journal. A deposit is committed before
 * the sender hears 200:
 * - `synchronous = NORMAL` (default): the commit is in the WAL file (the OS
 *   has it), so it survives a restart and `kill -9`; an OS crash or power
 *   loss can lose the last commits. About 0.15 ms per deposit here.
 * - `synchronous = FULL`: each commit is fsynced, so it survives power loss
 *   too. About 4 ms per deposit here, and `node:sqlite` is synchronous, so
 *   that fsync stalls the event loop (the relay's traffic) each time.
 *
 * Tables (the schema of Dendrite's `relayapi_queue`/`relayapi_queue_json`,
 * §2.5, folded into one row per entry, plus what our rules need):
 * - `mailbox_entry`: id (AUTOINCREMENT: never reused), recipient, origin,
 *   txn_id, body, bytes, expires_at;
 * - `mailbox_seen`: (origin, txn_id, recipient) → id, kept until the entry's
 *   expiry even after delivery, so a retried PUT is not delivered twice;
 * - `mailbox_recipient`: entries and bytes waiting per recipient (quotas).
 *
 * One process owns the file. `node:sqlite` is synchronous, so each method
 * runs as one transaction with nothing interleaved.
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Deposit, DepositLimits, DepositResult, MailboxStore, NextResult, StoreStats } from "./store.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS mailbox_entry (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  recipient TEXT NOT NULL,
  origin TEXT NOT NULL,
  txn_id TEXT NOT NULL,
  body TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mailbox_entry_recipient ON mailbox_entry (recipient, id);
CREATE INDEX IF NOT EXISTS mailbox_entry_expiry ON mailbox_entry (expires_at);
CREATE TABLE IF NOT EXISTS mailbox_seen (
  origin TEXT NOT NULL,
  txn_id TEXT NOT NULL,
  recipient TEXT NOT NULL,
  id INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (origin, txn_id, recipient)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mailbox_seen_expiry ON mailbox_seen (expires_at);
CREATE TABLE IF NOT EXISTS mailbox_recipient (
  recipient TEXT PRIMARY KEY,
  entries INTEGER NOT NULL,
  bytes INTEGER NOT NULL
) WITHOUT ROWID;
`;

/** See the module doc. */
export class SqliteMailboxStore implements MailboxStore {
  /** Always `sqlite`. */
  readonly kind = "sqlite";
  /** The database file. */
  readonly path: string;
  readonly #db: DatabaseSync;
  readonly #q: Record<string, StatementSync>;
  #totalBytes = 0;
  #totalEntries = 0;

  /**
   * Opens (creating if needed) the database at `path` (`:memory:` for tests).
   * @param opts `synchronous`: `normal` (default) or `full`, see the module doc
   * @throws {Error} the file cannot be opened or is not a mailbox database
   */
  constructor(path: string, opts: { synchronous?: "normal" | "full" } = {}) {
    this.path = path;
    try {
      this.#db = new DatabaseSync(path);
    } catch (e) {
      throw new Error(`mailbox database ${path}: ${(e as Error).message}`);
    }
    try {
      const sync = opts.synchronous === "full" ? "FULL" : "NORMAL";
      this.#db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${sync}; PRAGMA busy_timeout = 5000;`);
      this.#db.exec(SCHEMA);
    } catch (e) {
      this.#db.close();
      throw new Error(`mailbox database ${path}: ${(e as Error).message}`);
    }
    const p = (sql: string) => this.#db.prepare(sql);
    this.#q = {
      seen: p("SELECT id FROM mailbox_seen WHERE origin = ? AND txn_id = ? AND recipient = ? AND expires_at > ?"),
      quota: p("SELECT entries, bytes FROM mailbox_recipient WHERE recipient = ?"),
      insert: p(
        "INSERT INTO mailbox_entry (recipient, origin, txn_id, body, bytes, expires_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
      ),
      insertSeen: p(
        "INSERT OR REPLACE INTO mailbox_seen (origin, txn_id, recipient, id, expires_at) VALUES (?, ?, ?, ?, ?)",
      ),
      count: p(
        `INSERT INTO mailbox_recipient (recipient, entries, bytes) VALUES (?, ?, ?)
         ON CONFLICT (recipient) DO UPDATE SET entries = entries + excluded.entries, bytes = bytes + excluded.bytes`,
      ),
      dropEmpty: p("DELETE FROM mailbox_recipient WHERE recipient = ? AND entries <= 0"),
      owned: p("SELECT bytes FROM mailbox_entry WHERE id = ? AND recipient = ?"),
      del: p("DELETE FROM mailbox_entry WHERE id = ?"),
      oldest: p(
        "SELECT id, origin, body, bytes, expires_at FROM mailbox_entry WHERE recipient = ? ORDER BY id LIMIT 1",
      ),
      expired: p("SELECT id, recipient, bytes FROM mailbox_entry WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"),
      expireSeen: p("DELETE FROM mailbox_seen WHERE expires_at <= ?"),
      totals: p("SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM mailbox_entry"),
    };
    const t = this.#q.totals!.get() as { n: number; b: number };
    this.#totalEntries = Number(t.n);
    this.#totalBytes = Number(t.b);
  }

  #tx<T>(f: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const r = f();
      this.#db.exec("COMMIT");
      return r;
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  #remove(id: number, recipient: string, bytes: number): void {
    this.#q.del!.run(id);
    this.#q.count!.run(recipient, -1, -bytes);
    this.#q.dropEmpty!.run(recipient);
    this.#totalEntries--;
    this.#totalBytes -= bytes;
  }

  /** See {@link MailboxStore.deposit}. */
  deposit(d: Deposit, limits: DepositLimits): Promise<DepositResult> {
    return Promise.resolve(this.#tx((): DepositResult => {
      const seen = this.#q.seen!.get(d.origin, d.txnId, d.recipient, d.now) as { id: number } | undefined;
      if (seen) return { status: "duplicate", id: Number(seen.id) };
      const q = this.#q.quota!.get(d.recipient) as { entries: number; bytes: number } | undefined;
      if ((q ? Number(q.entries) : 0) + 1 > limits.maxEntries) return { status: "full", quota: "entries" };
      if ((q ? Number(q.bytes) : 0) + d.bytes > limits.maxBytes) return { status: "full", quota: "bytes" };
      if (this.#totalBytes + d.bytes > limits.maxTotalBytes) return { status: "full", quota: "total" };
      const row = this.#q.insert!.get(d.recipient, d.origin, d.txnId, d.body, d.bytes, d.expiresAt) as { id: number };
      const id = Number(row.id);
      this.#q.insertSeen!.run(d.origin, d.txnId, d.recipient, id, d.expiresAt);
      this.#q.count!.run(d.recipient, 1, d.bytes);
      this.#totalEntries++;
      this.#totalBytes += d.bytes;
      return { status: "stored", id };
    }));
  }

  /** See {@link MailboxStore.next}. */
  next(recipient: string, ack: number, now: number): Promise<NextResult> {
    return Promise.resolve(this.#tx((): NextResult => {
      let acked = false;
      if (ack > 0) {
        // Scoped to the caller's mailbox: an id of someone else's entry matches nothing.
        const own = this.#q.owned!.get(ack, recipient) as { bytes: number } | undefined;
        if (own) {
          this.#remove(ack, recipient, Number(own.bytes));
          acked = true;
        }
      }
      let expired = 0;
      for (;;) {
        const row = this.#q.oldest!.get(recipient) as
          | { id: number; origin: string; body: string; bytes: number; expires_at: number }
          | undefined;
        if (!row) return { acked, entry: null, expired };
        if (Number(row.expires_at) > now) {
          return { acked, entry: { id: Number(row.id), origin: row.origin, body: row.body }, expired };
        }
        this.#remove(Number(row.id), recipient, Number(row.bytes));
        expired++;
      }
    }));
  }

  /** See {@link MailboxStore.expire}. */
  expire(now: number, max: number): Promise<number> {
    return Promise.resolve(this.#tx(() => {
      const rows = this.#q.expired!.all(now, max) as { id: number; recipient: string; bytes: number }[];
      for (const r of rows) this.#remove(Number(r.id), r.recipient, Number(r.bytes));
      this.#q.expireSeen!.run(now);
      return rows.length;
    }));
  }

  /** See {@link MailboxStore.stats}. */
  stats(): Promise<StoreStats> {
    return Promise.resolve({ entries: this.#totalEntries, bytes: this.#totalBytes });
  }

  /** See {@link MailboxStore.close}. */
  close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
    return Promise.resolve();
  }
}
