/**
 * @module
 * The holder directory of the Deno KV mesh: `[P, "holder", key]` names the
 * instance holding an endpoint key (refreshed every 10 min, `expireIn`
 * 30 min). It owns the keys held here, the claims and releases waiting for
 * the pump, the holder refresh, and a short cache of other keys' holders.
 *
 * `claim` writes the holder entry, then sends a `claimed` notice to the
 * previous holder's inbox (the newer connection wins); `release` deletes the
 * entry only if it is still ours (versionstamp check), so a late release
 * never erases a newer claim.
 */

import { KEY_LEN, keyId, type MeshSink } from "../relay/mod.ts";
import { encodeMeshClaimed } from "./codec.ts";
import { type KvContext, retryLocked } from "./kv_context.ts";
import type { Liveness } from "./kv_liveness.ts";

/** How long a holder entry lives without refresh, ms. */
const HOLDER_TTL_MS = 30 * 60_000;
/** How often holder entries are refreshed, ms. */
export const HOLDER_REFRESH_MS = 10 * 60_000;
/**
 * How long a looked-up holder, and the absence of one, are trusted, ms.
 * "Nobody" is trusted briefly: a key that just connected elsewhere should
 * become reachable fast.
 */
const HOLDER_CACHE_MS = 1_000;
const NO_HOLDER_CACHE_MS = 250;
/** Claims per commit (KV allows 100 checks per commit), and rounds for keys another instance claims at once. */
const CHECKS_PER_COMMIT = 100;
const CLAIM_ATTEMPTS = 4;

/** A held key, when it was claimed (wall clock), and the versionstamp of our holder entry (null until written). */
interface Held {
  key: Uint8Array;
  at: number;
  vs: string | null;
}

/** A holder entry's value: the instance, and the wall-clock time of its claim (the newer claim wins). */
interface HolderValue {
  id: string;
  at: number;
}

function holderId(v: unknown): string | null {
  return typeof v === "object" && v !== null && typeof (v as HolderValue).id === "string"
    ? (v as HolderValue).id
    : null;
}

function holderAt(v: unknown): number {
  const at = typeof v === "object" && v !== null ? (v as HolderValue).at : undefined;
  return typeof at === "number" ? at : -Infinity;
}

/** Keys held here and the holders of others; see the module doc. */
export class HolderDirectory {
  readonly #ctx: KvContext;
  readonly #alive: Liveness;
  readonly #self: Uint8Array;
  /** Where a lost claim is reported (the core closes the local connection). */
  sink: MeshSink | null = null;
  // Owned by the hot path (claim/release) and the pump (apply*).
  #held = new Map<string, Held>();
  #toClaim = new Set<string>();
  #toRelease = new Map<string, Held>();
  readonly #cache = new Map<string, { id: string | null; at: number }>();

  /**
   * @param ctx the mesh's shared state
   * @param alive liveness of other instances (claimed notices go only to live ones)
   * @param self this instance's id as bytes (in claimed notices)
   */
  constructor(ctx: KvContext, alive: Liveness, self: Uint8Array) {
    this.#ctx = ctx;
    this.#alive = alive;
    this.#self = self;
  }

  /** Number of keys held here. */
  get heldCount(): number {
    return this.#held.size;
  }

  /** Claims or releases wait to be written. */
  get hasWork(): boolean {
    return this.#toClaim.size > 0 || this.#toRelease.size > 0;
  }

  /** A local connection now holds `key` (written by the pump). */
  claim(key: Uint8Array): void {
    const k = key.slice(0, KEY_LEN);
    const id = keyId(k);
    this.#toRelease.delete(id);
    this.#held.set(id, { key: k, at: this.#ctx.wall(), vs: null });
    this.#toClaim.add(id);
  }

  /** The local connection holding `key` left. */
  release(key: Uint8Array): void {
    const id = keyId(key.subarray(0, KEY_LEN));
    const h = this.#held.get(id);
    if (h === undefined) return;
    this.#held.delete(id);
    this.#toClaim.delete(id);
    this.#cache.delete(id);
    // Not written yet: the pump sees it is no longer held when its claim commit returns.
    if (h.vs !== null) this.#toRelease.set(id, h);
  }

  /** Writes the waiting releases and claims; returns claimed notices per previous holder. */
  async apply(): Promise<Map<string, Uint8Array[]>> {
    const releases = this.#toRelease;
    this.#toRelease = new Map();
    const claims = this.#toClaim;
    this.#toClaim = new Set();
    // Each step on its own: a failed directory write must not lose the datagrams sent after it.
    try {
      await this.#applyReleases(releases);
    } catch (e) {
      this.#ctx.fail("release", e);
    }
    try {
      return await this.#applyClaims(claims);
    } catch (e) {
      this.#ctx.fail("claim", e);
      return new Map();
    }
  }

  async #applyReleases(releases: Map<string, Held>): Promise<void> {
    const ctx = this.#ctx;
    const kv = ctx.db;
    await Promise.all([...releases.values()].map(async (h) => {
      const hk = ctx.holderKey(h.key);
      // Only our own entry: a newer claim elsewhere has another versionstamp and stays.
      const res = await retryLocked(() => kv.atomic().check({ key: hk, versionstamp: h.vs }).delete(hk).commit());
      if (res.ok) return;
      // A holder refresh may have rewritten our entry meanwhile (new versionstamp): still ours if it names this claim.
      const now = await retryLocked(() => kv.get<HolderValue>(hk));
      if (holderId(now.value) === ctx.instanceId && holderAt(now.value) === h.at) {
        await retryLocked(() => kv.atomic().check(now).delete(hk).commit());
      }
    }));
  }

  /**
   * Writes holder entries for `ids`; returns claimed notices for the
   * previous holders. The newer claim wins, by the wall-clock time of the
   * `claim` call, as the newer connection wins on one instance: each write
   * is checked against the entry just read, and an entry written meanwhile
   * by a newer claim elsewhere is left alone and closes our connection
   * instead. (Commit order alone would let an older connection that was
   * slower to commit take the key back.) Clock skew between instances
   * decides only between claims closer together than the skew.
   */
  async #applyClaims(ids: Set<string>): Promise<Map<string, Uint8Array[]>> {
    const ctx = this.#ctx;
    const notices = new Map<string, Uint8Array[]>();
    let items = [...ids].map((id) => [id, this.#held.get(id)] as const).filter((x): x is [string, Held] =>
      x[1] !== undefined
    );
    const kv = ctx.db;
    const previous: string[] = [];
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS && items.length > 0; attempt++) {
      const lost: [string, Held][] = [];
      const per = attempt === 0 ? CHECKS_PER_COMMIT : 1;
      for (let i = 0; i < items.length; i += per) {
        const chunk = items.slice(i, i + per);
        const read = await ctx.getEntries<HolderValue>(chunk.map(([, h]) => ctx.holderKey(h.key)));
        // A newer claim on another instance: ours lost; our connection closes as on a claimed notice.
        const newer = chunk.filter(([, h], j) => {
          const v = read[j]!.value;
          return holderId(v) !== null && holderId(v) !== ctx.instanceId && holderAt(v) > h.at;
        });
        for (const [, h] of newer) this.#lostClaim(h);
        const write = chunk.filter((x) => !newer.includes(x));
        const prev = read.filter((_, j) => !newer.includes(chunk[j]!));
        if (write.length === 0) continue;
        const res = await retryLocked(() => {
          const a = kv.atomic();
          write.forEach(([, h], j) => {
            const hk = ctx.holderKey(h.key);
            const value: HolderValue = { id: ctx.instanceId, at: h.at };
            a.check({ key: hk, versionstamp: prev[j]!.versionstamp }).set(hk, value, { expireIn: HOLDER_TTL_MS });
          });
          return a.commit();
        });
        if (!res.ok) {
          // Another instance wrote one of these meanwhile: read again and retry (one by one, so one
          // contended key does not hold up the rest).
          for (const item of write) lost.push(item);
          continue;
        }
        write.forEach(([id, h], j) => {
          const p = holderId(prev[j]!.value);
          if (p !== null && p !== ctx.instanceId) {
            previous.push(p);
            const list = notices.get(p) ?? [];
            list.push(encodeMeshClaimed(h.key, this.#self));
            notices.set(p, list);
          }
          this.#cache.set(id, { id: ctx.instanceId, at: performance.now() });
          if (this.#held.get(id) === h) {
            h.vs = res.versionstamp;
          } else if (!this.#toRelease.has(id)) {
            // Released while the commit was in flight: undo it (the check keeps a newer claim).
            this.#toRelease.set(id, { key: h.key, at: h.at, vs: res.versionstamp });
          }
        });
      }
      items = lost.filter(([id, h]) => this.#held.get(id) === h);
    }
    if (items.length > 0) ctx.fail("claim", new Error(`${items.length} key(s) contended; not claimed`));
    // Notices only to live instances: a dead one's inbox is never read.
    await this.#alive.lookup([...new Set(previous)]);
    for (const id of [...notices.keys()]) if (!this.#alive.isAlive(id)) notices.delete(id);
    return notices;
  }

  /** Our claim of `h` lost to a newer one elsewhere: close the local connection(s), as a claimed notice would. */
  #lostClaim(h: Held): void {
    const sink = this.sink;
    if (sink === null) return;
    // Not from inside the pump: the sink closes clients, whose release() comes back here.
    queueMicrotask(() => sink.claimed(h.key.slice()));
  }

  /** Looks up the holders of `keys` (id → key) whose cached holder is missing or stale. */
  async lookup(keys: Map<string, Uint8Array>): Promise<void> {
    const now = performance.now();
    const ctx = this.#ctx;
    const stale: string[] = [];
    for (const id of keys.keys()) {
      const c = this.#cache.get(id);
      // "Held here" is stale by definition: the core forwards only keys it does not have.
      if (
        c === undefined || c.id === ctx.instanceId ||
        now - c.at > (c.id === null ? NO_HOLDER_CACHE_MS : HOLDER_CACHE_MS)
      ) {
        stale.push(id);
      }
    }
    if (stale.length === 0) return;
    const found = await ctx.getMany<HolderValue>(stale.map((id) => ctx.holderKey(keys.get(id)!)));
    const at = performance.now();
    stale.forEach((id, i) => this.#cache.set(id, { id: holderId(found[i]), at }));
  }

  /** The cached holder of a key (after {@link lookup}), or null. */
  holderOf(id: string): string | null {
    return this.#cache.get(id)?.id ?? null;
  }

  /** Re-writes our holder entries before they expire; a check per key keeps newer claims elsewhere. */
  async refresh(): Promise<void> {
    const kv = this.#ctx.kv;
    if (kv === null || this.#ctx.closed) return;
    const held = [...this.#held.values()].filter((h) => h.vs !== null);
    // CHECKS_PER_COMMIT keys per commit; a batch whose check fails (a key was claimed elsewhere)
    // is redone key by key, so the others still get refreshed.
    for (let i = 0; i < held.length; i += CHECKS_PER_COMMIT) {
      const batch = held.slice(i, i + CHECKS_PER_COMMIT);
      try {
        const ok = await this.#refresh(kv, batch);
        if (!ok) { for (const h of batch) await this.#refresh(kv, [h]); }
      } catch (e) {
        this.#ctx.fail("holder refresh", e);
        return;
      }
    }
  }

  async #refresh(kv: Deno.Kv, batch: Held[]): Promise<boolean> {
    const ctx = this.#ctx;
    const vss = batch.map((h) => h.vs);
    const res = await retryLocked(() => {
      const a = kv.atomic();
      batch.forEach((h, j) => {
        const hk = ctx.holderKey(h.key);
        const value: HolderValue = { id: ctx.instanceId, at: h.at };
        a.check({ key: hk, versionstamp: vss[j]! }).set(hk, value, { expireIn: HOLDER_TTL_MS });
      });
      return a.commit();
    });
    if (!res.ok) return false;
    for (const h of batch) if (h.vs !== null) h.vs = res.versionstamp;
    return true;
  }

  /** Deletes our written holder entries (on close); a newer claim elsewhere stays. */
  async removeAll(): Promise<void> {
    const ctx = this.#ctx;
    const kv = ctx.db;
    for (const h of this.#held.values()) {
      if (h.vs === null) continue;
      const hk = ctx.holderKey(h.key);
      await retryLocked(() => kv.atomic().check({ key: hk, versionstamp: h.vs }).delete(hk).commit());
    }
  }
}
