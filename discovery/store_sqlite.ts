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
 * - Writes are group-committed: upserts arriving in the same event-loop turn
 *   share one transaction (at most {@link MAX_BATCH}), and each resolves only
 *   after its COMMIT. One commit costs about as much as one row (measured
 *   ~70 µs per single-row transaction on this machine), so under load this
 *   multiplies the write rate; upstream batches its writer the same way.
 * - Calls are synchronous on the event loop; a read is a primary-key lookup,
 *   or none: recently read or written packets are kept in memory (bounded by
 *   {@link READ_CACHE_BYTES}). This process is the file's only writer, so the
 *   copy is always current; an eviction sweep that removes anything clears it.
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { SignedPacket } from "./proto/signed_packet.ts";
import type { PacketStore, UpsertResult } from "./store.ts";

/** Bound of the in-memory copy of stored packets, bytes. */
export const READ_CACHE_BYTES = 32 * 1024 * 1024;

/** Most upserts in one transaction. */
export const MAX_BATCH = 1024;

interface PendingUpsert {
  p: SignedPacket;
  resolve(r: UpsertResult): void;
  reject(e: Error): void;
}

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
  #pending: PendingUpsert[] = [];
  readonly #cache = new Map<string, Uint8Array>();
  #cacheBytes = 0;

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
    const k = String.fromCharCode.apply(null, key as unknown as number[]);
    const hit = this.#cache.get(k);
    if (hit) return Promise.resolve(hit);
    const row = this.#get.get(key) as { packet: Uint8Array } | undefined;
    if (!row) return Promise.resolve(null);
    const bytes = new Uint8Array(row.packet);
    this.#remember(k, bytes);
    return Promise.resolve(bytes);
  }

  #remember(k: string, bytes: Uint8Array): void {
    const old = this.#cache.get(k);
    if (old) this.#cacheBytes -= old.length;
    this.#cache.delete(k);
    this.#cache.set(k, bytes);
    this.#cacheBytes += bytes.length;
    while (this.#cacheBytes > READ_CACHE_BYTES) {
      const [first, v] = this.#cache.entries().next().value!;
      this.#cache.delete(first);
      this.#cacheBytes -= v.length;
    }
  }

  upsert(p: SignedPacket): Promise<UpsertResult> {
    if (!this.#open) return Promise.reject(new Error("store closed"));
    const done = Promise.withResolvers<UpsertResult>();
    if (this.#pending.push({ p, resolve: done.resolve, reject: done.reject }) === 1) setTimeout(() => this.#flush(), 0);
    return done.promise;
  }

  #flush(): void {
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0, MAX_BATCH);
      const results: UpsertResult[] = [];
      try {
        this.#db.exec("BEGIN IMMEDIATE");
        const now = Date.now() * 1000;
        for (const { p } of batch) {
          const r = this.#upsert.run(p.key, tsBytes(p.ts), p.dns, p.bytes, now);
          results.push(Number(r.changes) > 0 ? "stored" : "stale");
        }
        this.#db.exec("COMMIT");
      } catch (e) {
        try {
          this.#db.exec("ROLLBACK");
        } catch {
          // no transaction open
        }
        for (const w of batch) w.reject(e as Error);
        continue;
      }
      batch.forEach((w, i) => {
        if (results[i] === "stored") {
          this.#remember(String.fromCharCode.apply(null, w.p.key as unknown as number[]), w.p.bytes);
        }
        w.resolve(results[i]!);
      });
    }
  }

  evictOlderThan(cutoffUs: bigint): Promise<number> {
    const n = Number(this.#evict.run(tsBytes(cutoffUs < 0n ? 0n : cutoffUs)).changes);
    if (n > 0) {
      this.#cache.clear();
      this.#cacheBytes = 0;
    }
    return Promise.resolve(n);
  }

  count(): Promise<number> {
    return Promise.resolve(Number((this.#count.get() as { n: number | bigint }).n));
  }

  healthy(): boolean {
    return this.#open;
  }

  close(): Promise<void> {
    this.#flush();
    if (this.#open) {
      this.#open = false;
      this.#db.close();
    }
    return Promise.resolve();
  }
}
