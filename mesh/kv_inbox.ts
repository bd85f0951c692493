/**
 * @module
 * The receiving side of the Deno KV mesh. The instance watches its wake key
 * (`kv.watch`) and, on each change, lists its inbox, delivers complete
 * batches in key order and deletes them. A batch's parts arrive together
 * (one commit), so a half-written batch is never seen.
 *
 * On a local KV file `watch` sees only this process's writes, so a slow or
 * fast poll of the wake key backs it up (see `kv.ts` for the measured costs):
 * it runs only while this instance holds keys, and at a tenth of its rate
 * after 2 s without mesh traffic.
 */

import type { MeshSink } from "../relay/mod.ts";
import { dispatchMesh, unframeMessages } from "./codec.ts";
import { type KvContext, retryLocked } from "./kv_context.ts";

/** Deletes per commit (limit 1000), and entries per inbox listing. */
const DELETES_PER_COMMIT = 500;
const LIST_PAGE = 128;
/** Inbox pages read per drain before yielding to other work. */
const DRAIN_PAGES = 16;
/** Mesh traffic silence after which the poll slows down, ms, and by how much. */
const POLL_IDLE_AFTER_MS = 2_000;
const POLL_IDLE_DIVISOR = 10;

/** Watch, poll and drain of this instance's inbox; see the module doc. */
export class Inbox {
  readonly #ctx: KvContext;
  readonly #self: Uint8Array;
  /** Where delivered messages go (null after close). */
  sink: MeshSink | null = null;
  // Owned by the reader.
  #draining: Promise<void> | null = null;
  #drainAgain = false;
  #pollRun: Promise<void> | null = null;
  #idleTicks = 0;
  #watch: ReadableStreamDefaultReader<Deno.KvEntryMaybe<unknown>[]> | null = null;
  #lastWake: string | null = null;

  /**
   * @param ctx the mesh's shared state
   * @param self this instance's id as bytes (to recognise its own claims)
   */
  constructor(ctx: KvContext, self: Uint8Array) {
    this.#ctx = ctx;
    this.#self = self;
  }

  /** Starts watching the wake key (restarted after a second if the stream ends). */
  startWatch(): void {
    const ctx = this.#ctx;
    const reader = ctx.db.watch([ctx.key("wake", ctx.instanceId)]).getReader();
    this.#watch = reader;
    (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.#lastWake = value[0]?.versionstamp ?? null;
        this.#drain();
      }
    })().catch((e) => {
      if (ctx.closed) return;
      ctx.fail("watch", e);
    }).finally(() => {
      // A watch that ends while running (network trouble on Deploy) is restarted; the poll covers the gap.
      if (!ctx.closed && this.#watch === reader) setTimeout(() => !ctx.closed && this.startWatch(), 1000);
    });
  }

  /** One poll tick: reads the wake key unless idle or holding nothing (`held`: keys held here). */
  poll(held: number): void {
    if (this.#pollRun !== null || this.#ctx.closed || held === 0) return;
    // Quiet for a while: poll at a tenth of the rate (see the module doc).
    if (
      performance.now() - this.#ctx.lastActivity > POLL_IDLE_AFTER_MS && ++this.#idleTicks % POLL_IDLE_DIVISOR !== 0
    ) {
      return;
    }
    this.#pollRun = this.#pollOnce().finally(() => this.#pollRun = null);
  }

  /** Stops watching; resolves when a drain or poll in flight has ended. */
  async stop(): Promise<void> {
    this.sink = null;
    await this.#watch?.cancel().catch(() => {});
    this.#watch = null;
    await Promise.all([this.#draining, this.#pollRun]);
  }

  async #pollOnce(): Promise<void> {
    const ctx = this.#ctx;
    try {
      const kv = ctx.db;
      const e = await retryLocked(() => kv.get(ctx.key("wake", ctx.instanceId)));
      if (e.versionstamp !== this.#lastWake) {
        this.#lastWake = e.versionstamp;
        this.#drain();
      }
    } catch (e) {
      ctx.fail("poll", e);
    }
  }

  /** Reads, delivers and deletes inbox batches; one drain at a time, re-run if woken meanwhile. */
  #drain(): void {
    if (this.#draining !== null) {
      this.#drainAgain = true;
      return;
    }
    if (this.#ctx.closed) return;
    this.#draining = this.#drainLoop().finally(() => this.#draining = null);
  }

  async #drainLoop(): Promise<void> {
    try {
      do {
        this.#drainAgain = false;
        for (let page = 0; page < DRAIN_PAGES && !this.#ctx.closed; page++) {
          if (!await this.#drainPage()) break;
          // A full page: more may wait; after DRAIN_PAGES, go round again (yielding once).
          if (page === DRAIN_PAGES - 1) this.#drainAgain = true;
        }
      } while (this.#drainAgain && !this.#ctx.closed);
    } catch (e) {
      this.#ctx.fail("inbox read", e);
    }
  }

  /** One page of the inbox; true if the page was full. */
  async #drainPage(): Promise<boolean> {
    const ctx = this.#ctx;
    const kv = ctx.db;
    const entries = await retryLocked(async () => {
      const got: Deno.KvEntry<Uint8Array>[] = [];
      for await (const e of kv.list<Uint8Array>({ prefix: ctx.key("inbox", ctx.instanceId) }, { limit: LIST_PAGE })) {
        got.push(e);
      }
      return got;
    });
    if (entries.length === 0) return false;
    const full = entries.length === LIST_PAGE;
    const done: Deno.KvKey[] = [];
    let i = 0;
    while (i < entries.length) {
      // A batch: entries with the same (ms, writer, seq), parts 0..n-1 in key order.
      const first = entries[i]!;
      const parts = first.key[7];
      let j = i;
      while (j < entries.length && sameBatch(entries[j]!.key, first.key)) j++;
      const group = entries.slice(i, j);
      if (group.length !== parts && j === entries.length && full) break; // cut by the page: next round
      for (const e of group) done.push(e.key);
      i = j;
      if (typeof parts !== "number" || group.length !== parts || !group.every((e) => e.value instanceof Uint8Array)) {
        ctx.stats.malformed++;
        continue;
      }
      ctx.stats.batchesRead++;
      ctx.lastActivity = performance.now();
      this.#deliver(group.length === 1 ? group[0]!.value : concat(group.map((e) => e.value)));
    }
    for (let k = 0; k < done.length; k += DELETES_PER_COMMIT) {
      const keys = done.slice(k, k + DELETES_PER_COMMIT);
      await retryLocked(() => {
        const a = kv.atomic();
        for (const key of keys) a.delete(key);
        return a.commit();
      });
    }
    return full;
  }

  #deliver(batch: Uint8Array): void {
    const sink = this.sink;
    if (sink === null) return;
    let msgs: Uint8Array[];
    try {
      msgs = unframeMessages(batch);
    } catch {
      this.#ctx.stats.malformed++;
      return;
    }
    for (const m of msgs) {
      try {
        dispatchMesh(m, sink, this.#self);
      } catch {
        this.#ctx.stats.malformed++;
      }
    }
  }
}

/** Same inbox batch: equal (ms, writer, seq) in `[P, "inbox", id, ms, writer, seq, part, parts]`. */
function sameBatch(a: Deno.KvKey, b: Deno.KvKey): boolean {
  return a[3] === b[3] && a[4] === b[4] && a[5] === b[5];
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
