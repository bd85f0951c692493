/**
 * @module
 * What the Deno KV mesh's subsystems share (`kv.ts` builds it): the open
 * database, the key layout under the prefix, this instance's id, the wall
 * clock, the counters, one rate-limited failure log, and the retry for
 * SQLite's "database is locked".
 */

import type { Logger } from "../log/mod.ts";

/** Backend counters, exported as metrics by `open.ts`. */
export interface KvMeshStats {
  /** Datagrams for a key with no live holder (connected nowhere, or its instance died). */
  unrouted: number;
  /** Messages dropped because the send queue was full (KV slow or failing). */
  overflow: number;
  /** Received entries or messages that did not decode. */
  malformed: number;
  /** KV operations that failed (their messages are lost). */
  errors: number;
  /** Inbox batches written. */
  batchesWritten: number;
  /** Inbox batches read. */
  batchesRead: number;
}

/** Keys per getMany (KV's limit). */
const GET_MANY = 10;
/** Attempts of an operation that failed with SQLite's "database is locked", and the first wait, ms. */
const LOCKED_ATTEMPTS = 8;
const LOCKED_WAIT_MS = 2;

/** Shared state of one KV mesh instance; see the module doc. */
export class KvContext {
  /** The database (set by `KvMesh.start`). */
  kv: Deno.Kv | null = null;
  /** Set once `close` has drained the pump: later failures are not news. */
  closed = false;
  /** When a batch was last written or read (performance.now), for the poll's idle slow-down. */
  lastActivity = -Infinity;
  /** Counters. */
  readonly stats: KvMeshStats = {
    unrouted: 0,
    overflow: 0,
    malformed: 0,
    errors: 0,
    batchesWritten: 0,
    batchesRead: 0,
  };
  #lastWarn = -Infinity;

  /**
   * @param prefix key prefix of this mesh
   * @param instanceId this instance's id
   * @param wall wall clock, ms since the epoch
   * @param log logger
   */
  constructor(
    readonly prefix: string,
    readonly instanceId: string,
    readonly wall: () => number,
    readonly log: Logger,
  ) {}

  /** The open database; only called once started. */
  get db(): Deno.Kv {
    return this.kv!;
  }

  /** `[prefix, ...parts]`. */
  key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    return [this.prefix, ...parts];
  }

  /** The holder entry of an endpoint key. */
  holderKey(key: Uint8Array): Deno.KvKey {
    return [this.prefix, "holder", key];
  }

  /** Values of `keys`, read GET_MANY at a time. */
  async getMany<T>(keys: Deno.KvKey[]): Promise<(T | null)[]> {
    return (await this.getEntries<T>(keys)).map((e) => e.value);
  }

  /** Entries of `keys`, read GET_MANY at a time. */
  async getEntries<T>(keys: Deno.KvKey[]): Promise<Deno.KvEntryMaybe<T>[]> {
    const kv = this.db;
    const chunks: Promise<Deno.KvEntryMaybe<T>[]>[] = [];
    for (let i = 0; i < keys.length; i += GET_MANY) {
      const part = keys.slice(i, i + GET_MANY);
      chunks.push(retryLocked(() => kv.getMany<T[]>(part)));
    }
    return (await Promise.all(chunks)).flat();
  }

  /** Counts a failed KV operation and logs it, at most once a second. */
  fail(what: string, e: unknown): void {
    // After close, operations still in flight fail on the closed database: not news.
    if (this.closed) return;
    this.stats.errors++;
    const now = performance.now();
    if (now - this.#lastWarn < 1000) return;
    this.#lastWarn = now;
    this.log.warn(`mesh kv: ${what} failed: ${(e as Error).message}`);
  }
}

/**
 * Runs `op`, again (with doubling waits, ~0.5 s in all) while it fails with
 * "database is locked": on a local file, handles in other processes (or
 * this one) take SQLite's write lock in turns and Deno KV does not wait for
 * it. There is no event for the lock's release, so this is a timed retry.
 * Deploy's KV does not fail this way.
 */
export async function retryLocked<T>(op: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await op();
    } catch (e) {
      if (attempt >= LOCKED_ATTEMPTS || !/database is locked/i.test((e as Error)?.message ?? "")) throw e;
      await new Promise((r) => setTimeout(r, LOCKED_WAIT_MS << (attempt - 1)));
    }
  }
}

/** Waits for `p` (its failure ignored), at most `ms`. */
export async function withDeadline(p: Promise<unknown>, ms: number): Promise<void> {
  let t: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p.then(() => {}, () => {}), new Promise<void>((r) => t = setTimeout(r, ms))]);
  clearTimeout(t);
}
