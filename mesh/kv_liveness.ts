/**
 * @module
 * Which instances of the Deno KV mesh are alive: this instance's heartbeat
 * (`[P, "alive", id]` = the wall-clock ms it lives to, written every 5 s,
 * good for 20 s) and a short cache of the others' entries. Expiry in KV is
 * lazy (a local file kept expired entries readable for more than a second),
 * so liveness is checked against the stored time; `expireIn` only collects
 * garbage.
 */

import { type KvContext, retryLocked } from "./kv_context.ts";

/** An instance counts as alive this long after its last heartbeat, which it writes this often, ms. */
const ALIVE_TTL_MS = 20_000;
/** How often the heartbeat is written, ms. */
export const ALIVE_REFRESH_MS = 5_000;
/** Garbage collection of alive entries of instances that are long gone, ms. */
const ALIVE_EXPIRE_MS = 10 * 60_000;
/** How long a looked-up liveness is trusted, ms. */
const ALIVE_CACHE_MS = 2_000;

/** Heartbeat and liveness cache; see the module doc. */
export class Liveness {
  readonly #ctx: KvContext;
  readonly #cache = new Map<string, { alive: boolean; at: number }>();

  /** @param ctx the mesh's shared state */
  constructor(ctx: KvContext) {
    this.#ctx = ctx;
  }

  /** Writes this instance's alive entry. */
  async heartbeat(): Promise<void> {
    const ctx = this.#ctx;
    const kv = ctx.db;
    const until = ctx.wall() + ALIVE_TTL_MS;
    await retryLocked(() => kv.set(ctx.key("alive", ctx.instanceId), until, { expireIn: ALIVE_EXPIRE_MS }));
  }

  /** Removes this instance's alive entry (on close). */
  async forget(): Promise<void> {
    const ctx = this.#ctx;
    const kv = ctx.db;
    await retryLocked(() => kv.delete(ctx.key("alive", ctx.instanceId)));
  }

  /** Refreshes the cached liveness of `ids` that is older than the cache period. */
  async lookup(ids: string[]): Promise<void> {
    const now = performance.now();
    const stale = ids.filter((id) => {
      const c = this.#cache.get(id);
      return c === undefined || now - c.at > ALIVE_CACHE_MS;
    });
    if (stale.length === 0) return;
    const ctx = this.#ctx;
    const until = await ctx.getMany<number>(stale.map((id) => ctx.key("alive", id)));
    const wall = ctx.wall();
    const at = performance.now();
    stale.forEach((id, i) => {
      const u = until[i];
      this.#cache.set(id, { alive: typeof u === "number" && u > wall, at });
    });
  }

  /** Whether `id` was alive at its last {@link lookup}. */
  isAlive(id: string): boolean {
    return this.#cache.get(id)?.alive ?? false;
  }
}
