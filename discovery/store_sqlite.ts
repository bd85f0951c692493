/**
 * @module
 * The embedded store: one SQLite file (`<data_dir>/signed-packets-1.sqlite`)
 * through Deno's built-in `node:sqlite`, so nothing has to be installed.
 *
 * - WAL journal with `synchronous = NORMAL`: a commit reaches the OS before
 *   the PUT is answered, so `kill -9` of the process loses nothing that got
 *   204 (only a power loss could drop the last commits; `FULL` would cost
 *   an fsync per PUT).
 * - Newer-wins is one `INSERT … ON CONFLICT DO UPDATE … WHERE`: SQLite
 *   compares BLOBs with memcmp then length, which is the spec's order when
 *   the timestamp is stored as 8 big-endian bytes. (A u64 timestamp does not
 *   fit SQLite's signed INTEGER, hence the BLOB.)
 * - Calls are synchronous on the event loop; each is a primary-key lookup or
 *   a single-row write (microseconds).
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { SignedPacket } from "./proto/signed_packet.ts";
import type { PacketStore, UpsertResult } from "./store.ts";

/** File name inside `data_dir`. */
export const SQLITE_FILE = "signed-packets-1.sqlite";

function tsBytes(ts: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, ts);
  return b;
}

/** See the module doc. */
export class SqliteStore implements PacketStore {
  readonly kind = "sqlite";
  readonly #db: DatabaseSync;
  readonly #get: StatementSync;
  readonly #upsert: StatementSync;
  readonly #evict: StatementSync;
  readonly #count: StatementSync;
  #open = true;

  /** Opens (creating if needed) the database at `path` (`:memory:` for tests). */
  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    this.#db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    this.#db.exec(`CREATE TABLE IF NOT EXISTS signed_packets (
      key BLOB PRIMARY KEY, ts BLOB NOT NULL, dns BLOB NOT NULL, packet BLOB NOT NULL, last_seen_us INTEGER NOT NULL
    ) WITHOUT ROWID; CREATE INDEX IF NOT EXISTS signed_packets_ts ON signed_packets (ts);`);
    this.#get = this.#db.prepare("SELECT packet FROM signed_packets WHERE key = ?");
    this.#upsert = this.#db.prepare(`INSERT INTO signed_packets (key, ts, dns, packet, last_seen_us)
      VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET
      ts = excluded.ts, dns = excluded.dns, packet = excluded.packet, last_seen_us = excluded.last_seen_us
      WHERE excluded.ts > signed_packets.ts OR (excluded.ts = signed_packets.ts AND excluded.dns > signed_packets.dns)`);
    this.#evict = this.#db.prepare("DELETE FROM signed_packets WHERE ts < ?");
    this.#count = this.#db.prepare("SELECT count(*) AS n FROM signed_packets");
  }

  get(key: Uint8Array): Promise<Uint8Array | null> {
    const row = this.#get.get(key) as { packet: Uint8Array } | undefined;
    return Promise.resolve(row ? new Uint8Array(row.packet) : null);
  }

  upsert(p: SignedPacket): Promise<UpsertResult> {
    const r = this.#upsert.run(p.key, tsBytes(p.ts), p.dns, p.bytes, Date.now() * 1000);
    return Promise.resolve(Number(r.changes) > 0 ? "stored" : "stale");
  }

  evictOlderThan(cutoffUs: bigint): Promise<number> {
    return Promise.resolve(Number(this.#evict.run(tsBytes(cutoffUs < 0n ? 0n : cutoffUs)).changes));
  }

  count(): Promise<number> {
    return Promise.resolve(Number((this.#count.get() as { n: number | bigint }).n));
  }

  healthy(): boolean {
    return this.#open;
  }

  close(): Promise<void> {
    if (this.#open) {
      this.#open = false;
      this.#db.close();
    }
    return Promise.resolve();
  }
}
