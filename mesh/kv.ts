/**
 * @module
 * The instance mesh over Deno KV: for the new Deno Deploy, whose isolated
 * instances share nothing but a KV database (Deploy Classic's cross-isolate
 * BroadcastChannel is gone). Also works on a local SQLite KV file shared by
 * several processes, with polling (see below).
 *
 * Layout, under the configured prefix `P`:
 *
 * | key                                              | value                     | written                            |
 * | ------------------------------------------------ | ------------------------- | ---------------------------------- |
 * | `[P, "holder", key]`                             | holding instance id       | on claim; refreshed every 10 min, `expireIn` 30 min |
 * | `[P, "alive", id]`                               | wall-clock ms it lives to | every 5 s (good for 20 s)          |
 * | `[P, "inbox", id, ms, writer, seq, part, parts]` | framed messages (≤ 60 KB) | per batch, `expireIn` 60 s         |
 * | `[P, "wake", id]`                                | u64 counter               | summed in the inbox batch's commit |
 *
 * This file wires four subsystems, each in its own file:
 * - `kv_outbox.ts`, sending (`forward`, `gone`): a bounded in-memory queue
 *   and one pump that writes claims, releases and inbox batches (one atomic
 *   commit per batch, with a `sum` on the target's wake key);
 * - `kv_directory.ts`, the holder directory: `claim` writes the holder entry
 *   and notifies the previous holder (the newer connection wins); `release`
 *   deletes it only if still ours; the 10-minute refresh; the holder cache;
 * - `kv_liveness.ts`, the heartbeat: a crashed instance stops refreshing
 *   `alive`; within 20 s senders treat its keys as connected nowhere, and
 *   its entries expire by themselves;
 * - `kv_inbox.ts`, receiving: watch and poll of the wake key, then list,
 *   deliver (complete batches, in key order) and delete.
 * `kv_context.ts` holds what they share (database, key layout, counters).
 *
 * Wake-ups and their limits: on one local KV file, `watch` and
 * `listenQueue` only see writes made in the same process (checked with
 * Deno 2.9: a second process's writes never woke the watcher, in 40 s), so
 * a local path needs polling: every `pollMs` (default 20 ms with a path)
 * the instance reads its wake key and drains on a change; a cross-process
 * datagram then waits 10 ms on average for the poll. Each poll costs about
 * 0.7 ms of CPU (measured: 3.6% of a core at 20 ms, 1.6% at 50 ms, idle), so
 * the poll runs only while this instance holds keys (nobody sends to an
 * instance without any), and at a tenth of the rate after 2 s without mesh
 * traffic: the first datagram after a quiet spell may wait up to
 * 10 × `pollMs`. Queues are no help for
 * routing anyway: a queued message goes to any listener, not to the
 * instance holding the key. On Deno Deploy `watch` is meant to see every
 * isolate's writes; a slow safety poll (default 1 s) still covers a watch
 * stream that ends or misses a change. That behaviour, and the latency
 * across Deploy regions, could not be tested here.
 *
 * Costs, honestly: every cross-instance batch is one KV write transaction
 * (parts + wake sum) plus, at the receiver, one list and one delete
 * transaction, and a destination not in the holder cache costs a read.
 * On Deploy each is a billed operation that crosses the network; its
 * latency there was not measured. Locally (`bench/`, scenario 7) a
 * datagram crossing instances gains about 1.5–2.5 ms at the median when
 * woken by `watch` and about 12 ms with the 20 ms poll, against about
 * 0.3 ms through Redis. Idle cost per instance: one alive write every 5 s,
 * one wake read per poll while holding keys (1 s on Deploy, 10 s when
 * quiet), and one holder refresh per held key every 10 min. A key moving
 * to another instance reaches senders within the 1 s holder cache.
 * Batching makes a busy pair cheap per datagram; a trickle of single
 * datagrams pays full price each time.
 */

import { type Logger, silentLogger } from "../log/mod.ts";
import type { InstanceMesh, MeshSink } from "../relay/mod.ts";
import { encodeMeshDatagram, encodeMeshGone, MAX_INSTANCE_ID_LEN } from "./codec.ts";
import { KvContext, type KvMeshStats, withDeadline } from "./kv_context.ts";
import { HOLDER_REFRESH_MS, HolderDirectory } from "./kv_directory.ts";
import { Inbox } from "./kv_inbox.ts";
import { ALIVE_REFRESH_MS, Liveness } from "./kv_liveness.ts";
import { DEFAULT_PENDING_BYTES, Outbox } from "./kv_outbox.ts";

export type { KvMeshStats };

/** Options of {@link KvMesh}. */
export interface KvMeshOptions {
  /** An open database (tests, or a caller that shares it); the caller closes it. */
  kv?: Deno.Kv;
  /** Database to open when `kv` is not given: a local file, or undefined for the platform's default. */
  path?: string;
  /** Key prefix: relays sharing one database need distinct ones. Default `iroh-relay`. */
  prefix?: string;
  /** This instance's id. Default: 16 random hex digits. */
  instanceId?: string;
  /** Poll of the wake key, ms (0: watch only). Default 20 with a `path`, else 1000 (safety net behind `watch`). */
  pollMs?: number;
  /** Logger. */
  log?: Logger;
  /** Cap of messages waiting to be written, bytes. Default 4 MiB. */
  maxPendingBytes?: number;
  /** Wall clock, ms since the epoch (liveness is compared across instances). Default `Date.now`. */
  wallClock?: () => number;
  /** Period of the holder-entry refresh, ms (tests shorten it). Default 10 min. */
  holderRefreshMs?: number;
}

/** How long `close` lets the pump finish and cleans up, ms. */
const CLOSE_MS = 1_000;

const enc = new TextEncoder();

function randomId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Opens the platform's (or a local) KV database.
 * @throws {Error} Deno KV is not available (locally it needs `--unstable-kv`)
 */
export async function openKv(path: string | undefined): Promise<Deno.Kv> {
  if (typeof Deno.openKv !== "function") {
    throw new Error("Deno KV is not available: run with --unstable-kv (Deno Deploy provides it)");
  }
  return await Deno.openKv(path);
}

/** See the module doc. */
export class KvMesh implements InstanceMesh {
  /** Backend name. */
  readonly kind = "kv";
  /** This instance's id. */
  readonly instanceId: string;
  readonly #opts: KvMeshOptions;
  readonly #pollMs: number;
  readonly #ctx: KvContext;
  readonly #alive: Liveness;
  readonly #dir: HolderDirectory;
  readonly #outbox: Outbox;
  readonly #inbox: Inbox;
  #ownsKv = false;
  #closing: Promise<void> | null = null;
  #timers: ReturnType<typeof setInterval>[] = [];

  /** @param opts see {@link KvMeshOptions} */
  constructor(opts: KvMeshOptions = {}) {
    this.#opts = opts;
    this.instanceId = opts.instanceId ?? randomId();
    const self = enc.encode(this.instanceId);
    if (self.length === 0 || self.length > MAX_INSTANCE_ID_LEN) {
      throw new RangeError(`Instance id must be 1 to ${MAX_INSTANCE_ID_LEN} bytes: "${this.instanceId}"`);
    }
    this.#pollMs = opts.pollMs ?? (opts.path !== undefined ? 20 : 1000);
    this.#ctx = new KvContext(
      opts.prefix ?? "iroh-relay",
      this.instanceId,
      opts.wallClock ?? Date.now,
      opts.log ?? silentLogger,
    );
    this.#alive = new Liveness(this.#ctx);
    this.#dir = new HolderDirectory(this.#ctx, this.#alive, self);
    this.#outbox = new Outbox(this.#ctx, this.#dir, this.#alive, opts.maxPendingBytes ?? DEFAULT_PENDING_BYTES);
    this.#inbox = new Inbox(this.#ctx, self);
  }

  /** Counters. */
  get stats(): KvMeshStats {
    return this.#ctx.stats;
  }

  /** Opens the database (unless given), announces this instance, starts watching its inbox. */
  async start(sink: MeshSink): Promise<void> {
    this.#dir.sink = sink;
    this.#inbox.sink = sink;
    if (this.#opts.kv) {
      this.#ctx.kv = this.#opts.kv;
    } else {
      this.#ctx.kv = await openKv(this.#opts.path);
      this.#ownsKv = true;
    }
    await this.#alive.heartbeat();
    this.#inbox.startWatch();
    if (this.#pollMs > 0) this.#timers.push(setInterval(() => this.#inbox.poll(this.#dir.heldCount), this.#pollMs));
    this.#timers.push(
      setInterval(() => this.#alive.heartbeat().catch((e) => this.#ctx.fail("heartbeat", e)), ALIVE_REFRESH_MS),
    );
    this.#timers.push(setInterval(() => this.#dir.refresh(), this.#opts.holderRefreshMs ?? HOLDER_REFRESH_MS));
  }

  claim(key: Uint8Array): void {
    this.#dir.claim(key);
    this.#outbox.schedule();
  }

  release(key: Uint8Array): void {
    this.#dir.release(key);
    this.#outbox.schedule();
  }

  forward(dst: Uint8Array, src: Uint8Array, ecn: number, segmentSize: number, contents: Uint8Array): void {
    this.#outbox.enqueue(dst, encodeMeshDatagram(dst, src, ecn, segmentSize, contents), true);
  }

  gone(dst: Uint8Array, gone: Uint8Array): void {
    this.#outbox.enqueue(dst, encodeMeshGone(dst, gone), false);
  }

  /** Sends what is queued (bounded wait), removes this instance's entries, closes the database if it opened it. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    const ctx = this.#ctx;
    const kv = ctx.kv;
    if (kv === null) return;
    // The core closed its clients just before: their releases and EndpointGone notices are queued.
    this.#outbox.schedule();
    await withDeadline(this.#outbox.pumping ?? Promise.resolve(), CLOSE_MS);
    ctx.closed = true;
    this.#dir.sink = null;
    await withDeadline(this.#inbox.stop(), CLOSE_MS);
    const cleanup = (async () => {
      await this.#dir.removeAll();
      await this.#alive.forget();
    })();
    await withDeadline(cleanup.catch((e) => ctx.fail("cleanup on close", e)), CLOSE_MS);
    if (this.#ownsKv) kv.close();
  }
}
