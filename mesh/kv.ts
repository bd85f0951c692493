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
 * - Sending (`forward`, `gone`): messages queue in memory (bounded, 4 MiB)
 *   and one pump writes them: it looks up each destination's holder
 *   (cached 1 s) and whether that instance is alive (cached 2 s), frames
 *   the messages per target (`mesh_codec.ts`) and writes each batch, split
 *   into parts under KV's 64 KiB value limit, in ONE atomic commit together
 *   with a `sum` on the target's wake key. While a commit is in flight new
 *   messages accumulate, so under load the writes batch by themselves.
 * - Receiving: the instance watches its wake key (`kv.watch`) and, on each
 *   change, lists its inbox, delivers complete batches in key order and
 *   deletes them. A batch's parts arrive together (one commit), so a
 *   half-written batch is never seen.
 * - `claim` writes the holder entry, then sends a `claimed` notice to the
 *   previous holder's inbox (the newer connection wins); `release` deletes
 *   the entry only if it is still ours (versionstamp check), so a late
 *   release never erases a newer claim.
 * - A crashed instance stops refreshing `alive`; within 20 s senders treat
 *   its keys as connected nowhere, and its entries expire by themselves.
 *   Expiry in KV is lazy (a local file kept expired entries readable for
 *   more than a second), so liveness is checked against the stored time,
 *   and `expireIn` only collects garbage.
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
import { type InstanceMesh, KEY_LEN, keyId, type MeshSink } from "../relay/mod.ts";
import {
  dispatchMesh,
  encodeMeshClaimed,
  encodeMeshDatagram,
  encodeMeshGone,
  FRAME_PREFIX_LEN,
  frameMessages,
  MAX_INSTANCE_ID_LEN,
  unframeMessages,
} from "./codec.ts";

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

/** Backend counters, exported as metrics by `mesh_open.ts`. */
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

/** How long a holder entry lives without refresh, and how often it is refreshed, ms. */
const HOLDER_TTL_MS = 30 * 60_000;
const HOLDER_REFRESH_MS = 10 * 60_000;
/** An instance counts as alive this long after its last heartbeat, which it writes this often, ms. */
const ALIVE_TTL_MS = 20_000;
const ALIVE_REFRESH_MS = 5_000;
/** Garbage collection of alive entries of instances that are long gone, ms. */
const ALIVE_EXPIRE_MS = 10 * 60_000;
/** Unread inbox entries (of a dead instance) expire after, ms. */
const INBOX_TTL_MS = 60_000;
/**
 * How long a looked-up holder, the absence of one, and an instance's
 * liveness are trusted, ms. "Nobody" is trusted briefly: a key that just
 * connected elsewhere should become reachable fast.
 */
const HOLDER_CACHE_MS = 1_000;
const NO_HOLDER_CACHE_MS = 250;
const ALIVE_CACHE_MS = 2_000;
/** Bytes per inbox entry: under KV's 65,536-byte value limit. */
const PART_BYTES = 60_000;
/** Bytes of messages per inbox batch (one commit; KV allows 800 KiB of mutations per commit). */
const BATCH_BYTES = 256 * 1024;
/** Keys per getMany (KV's limit), deletes per commit (limit 1000), and entries per inbox listing. */
const GET_MANY = 10;
/** Claims per commit (KV allows 100 checks per commit), and rounds for keys another instance claims at once. */
const CHECKS_PER_COMMIT = 100;
const CLAIM_ATTEMPTS = 4;
const DELETES_PER_COMMIT = 500;
const LIST_PAGE = 128;
/** Inbox pages read per drain before yielding to other work. */
const DRAIN_PAGES = 16;
/** Mesh traffic silence after which the poll slows down, ms, and by how much. */
const POLL_IDLE_AFTER_MS = 2_000;
const POLL_IDLE_DIVISOR = 10;
/** Default cap of queued outgoing bytes. */
const DEFAULT_PENDING_BYTES = 4 * 1024 * 1024;
/** How long `close` lets the pump finish and cleans up, ms. */
const CLOSE_MS = 1_000;

const enc = new TextEncoder();

function randomId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One outgoing message routed by its destination key. */
interface Outgoing {
  dstId: string;
  dst: Uint8Array;
  msg: Uint8Array;
  datagram: boolean;
}

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
  /** Counters. */
  readonly stats: KvMeshStats = {
    unrouted: 0,
    overflow: 0,
    malformed: 0,
    errors: 0,
    batchesWritten: 0,
    batchesRead: 0,
  };
  readonly #opts: KvMeshOptions;
  readonly #log: Logger;
  readonly #p: string;
  readonly #self: Uint8Array;
  readonly #wall: () => number;
  readonly #pollMs: number;
  readonly #maxPending: number;
  #kv: Deno.Kv | null = null;
  #ownsKv = false;
  #sink: MeshSink | null = null;
  #closed = false;
  #closing: Promise<void> | null = null;

  // Owned by the hot path (producers) and #pump (consumer).
  #out: Outgoing[] = [];
  #outBytes = 0;
  #held = new Map<string, Held>();
  #toClaim = new Set<string>();
  #toRelease = new Map<string, Held>();
  #pumping: Promise<void> | null = null;
  #seq = 0;

  readonly #holderCache = new Map<string, { id: string | null; at: number }>();
  readonly #aliveCache = new Map<string, { alive: boolean; at: number }>();

  // Owned by the reader.
  #draining: Promise<void> | null = null;
  #drainAgain = false;
  #pollRun: Promise<void> | null = null;
  /** When a batch was last written or read (performance.now), for the poll's idle slow-down. */
  #lastActivity = -Infinity;
  #idleTicks = 0;
  #watch: ReadableStreamDefaultReader<Deno.KvEntryMaybe<unknown>[]> | null = null;
  #lastWake: string | null = null;
  #timers: ReturnType<typeof setInterval>[] = [];
  #lastWarn = -Infinity;

  /** @param opts see {@link KvMeshOptions} */
  constructor(opts: KvMeshOptions = {}) {
    this.#opts = opts;
    this.instanceId = opts.instanceId ?? randomId();
    this.#self = enc.encode(this.instanceId);
    if (this.#self.length === 0 || this.#self.length > MAX_INSTANCE_ID_LEN) {
      throw new RangeError(`Instance id must be 1 to ${MAX_INSTANCE_ID_LEN} bytes: "${this.instanceId}"`);
    }
    this.#p = opts.prefix ?? "iroh-relay";
    this.#log = opts.log ?? silentLogger;
    this.#wall = opts.wallClock ?? Date.now;
    this.#pollMs = opts.pollMs ?? (opts.path !== undefined ? 20 : 1000);
    this.#maxPending = opts.maxPendingBytes ?? DEFAULT_PENDING_BYTES;
  }

  /** Opens the database (unless given), announces this instance, starts watching its inbox. */
  async start(sink: MeshSink): Promise<void> {
    this.#sink = sink;
    if (this.#opts.kv) {
      this.#kv = this.#opts.kv;
    } else {
      this.#kv = await openKv(this.#opts.path);
      this.#ownsKv = true;
    }
    await this.#heartbeat();
    this.#startWatch();
    if (this.#pollMs > 0) this.#timers.push(setInterval(() => this.#poll(), this.#pollMs));
    this.#timers.push(setInterval(() => this.#heartbeat().catch((e) => this.#fail("heartbeat", e)), ALIVE_REFRESH_MS));
    this.#timers.push(setInterval(() => this.#refreshHolders(), this.#opts.holderRefreshMs ?? HOLDER_REFRESH_MS));
  }

  claim(key: Uint8Array): void {
    const k = key.slice(0, KEY_LEN);
    const id = keyId(k);
    this.#toRelease.delete(id);
    this.#held.set(id, { key: k, at: this.#wall(), vs: null });
    this.#toClaim.add(id);
    this.#schedule();
  }

  release(key: Uint8Array): void {
    const id = keyId(key.subarray(0, KEY_LEN));
    const h = this.#held.get(id);
    if (h === undefined) return;
    this.#held.delete(id);
    this.#toClaim.delete(id);
    this.#holderCache.delete(id);
    // Not written yet: the pump sees it is no longer held when its claim commit returns.
    if (h.vs !== null) this.#toRelease.set(id, h);
    this.#schedule();
  }

  forward(dst: Uint8Array, src: Uint8Array, ecn: number, segmentSize: number, contents: Uint8Array): void {
    this.#enqueue(dst, encodeMeshDatagram(dst, src, ecn, segmentSize, contents), true);
  }

  gone(dst: Uint8Array, gone: Uint8Array): void {
    this.#enqueue(dst, encodeMeshGone(dst, gone), false);
  }

  /** Sends what is queued (bounded wait), removes this instance's entries, closes the database if it opened it. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    const kv = this.#kv;
    if (kv === null) return;
    // The core closed its clients just before: their releases and EndpointGone notices are queued.
    this.#schedule();
    await withDeadline(this.#pumping ?? Promise.resolve(), CLOSE_MS);
    this.#closed = true;
    this.#sink = null;
    await this.#watch?.cancel().catch(() => {});
    this.#watch = null;
    await withDeadline(Promise.all([this.#draining, this.#pollRun]), CLOSE_MS);
    const cleanup = (async () => {
      for (const h of this.#held.values()) {
        if (h.vs === null) continue;
        const hk = this.#holderKey(h.key);
        await retryLocked(() => kv.atomic().check({ key: hk, versionstamp: h.vs }).delete(hk).commit());
      }
      await retryLocked(() => kv.delete(this.#key("alive", this.instanceId)));
    })();
    await withDeadline(cleanup.catch((e) => this.#fail("cleanup on close", e)), CLOSE_MS);
    if (this.#ownsKv) kv.close();
  }

  #key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    return [this.#p, ...parts];
  }

  #holderKey(key: Uint8Array): Deno.KvKey {
    return [this.#p, "holder", key];
  }

  #enqueue(dst: Uint8Array, msg: Uint8Array, datagram: boolean): void {
    if (this.#closed || this.#outBytes + msg.length > this.#maxPending) {
      this.stats.overflow++;
      return;
    }
    const d = dst.slice(0, KEY_LEN);
    this.#out.push({ dstId: keyId(d), dst: d, msg, datagram });
    this.#outBytes += msg.length;
    this.#schedule();
  }

  #hasWork(): boolean {
    return this.#out.length > 0 || this.#toClaim.size > 0 || this.#toRelease.size > 0;
  }

  /** Starts the pump unless it runs; it picks up everything queued meanwhile. */
  #schedule(): void {
    if (this.#pumping !== null || this.#closed || this.#kv === null) return;
    // A microtask: every datagram of the chunk being read joins the first batch.
    this.#pumping = Promise.resolve().then(() => this.#pump()).finally(() => {
      this.#pumping = null;
      if (this.#hasWork()) this.#schedule();
    });
  }

  async #pump(): Promise<void> {
    while (this.#hasWork() && !this.#closed) {
      const releases = this.#toRelease;
      this.#toRelease = new Map();
      const claims = this.#toClaim;
      this.#toClaim = new Set();
      const out = this.#out;
      this.#out = [];
      this.#outBytes = 0;
      // Each step on its own: a failed directory write must not lose the datagrams.
      let notices = new Map<string, Uint8Array[]>();
      try {
        await this.#applyReleases(releases);
      } catch (e) {
        this.#fail("release", e);
      }
      try {
        notices = await this.#applyClaims(claims);
      } catch (e) {
        this.#fail("claim", e);
      }
      try {
        await this.#send(out, notices);
      } catch (e) {
        this.#fail("send", e);
      }
    }
  }

  async #applyReleases(releases: Map<string, Held>): Promise<void> {
    const kv = this.#kv!;
    await Promise.all([...releases.values()].map(async (h) => {
      const hk = this.#holderKey(h.key);
      // Only our own entry: a newer claim elsewhere has another versionstamp and stays.
      const res = await retryLocked(() => kv.atomic().check({ key: hk, versionstamp: h.vs }).delete(hk).commit());
      if (res.ok) return;
      // A holder refresh may have rewritten our entry meanwhile (new versionstamp): still ours if it names this claim.
      const now = await retryLocked(() => kv.get<HolderValue>(hk));
      if (holderId(now.value) === this.instanceId && holderAt(now.value) === h.at) {
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
    const notices = new Map<string, Uint8Array[]>();
    let items = [...ids].map((id) => [id, this.#held.get(id)] as const).filter((x): x is [string, Held] =>
      x[1] !== undefined
    );
    const kv = this.#kv!;
    const previous: string[] = [];
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS && items.length > 0; attempt++) {
      const lost: [string, Held][] = [];
      const per = attempt === 0 ? CHECKS_PER_COMMIT : 1;
      for (let i = 0; i < items.length; i += per) {
        const chunk = items.slice(i, i + per);
        const read = await this.#getEntries<HolderValue>(chunk.map(([, h]) => this.#holderKey(h.key)));
        // A newer claim on another instance: ours lost; our connection closes as on a claimed notice.
        const newer = chunk.filter(([, h], j) => {
          const v = read[j]!.value;
          return holderId(v) !== null && holderId(v) !== this.instanceId && holderAt(v) > h.at;
        });
        for (const [, h] of newer) this.#lostClaim(h);
        const write = chunk.filter((x) => !newer.includes(x));
        const prev = read.filter((_, j) => !newer.includes(chunk[j]!));
        if (write.length === 0) continue;
        const res = await retryLocked(() => {
          const a = kv.atomic();
          write.forEach(([, h], j) => {
            const hk = this.#holderKey(h.key);
            const value: HolderValue = { id: this.instanceId, at: h.at };
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
          if (p !== null && p !== this.instanceId) {
            previous.push(p);
            const list = notices.get(p) ?? [];
            list.push(encodeMeshClaimed(h.key, this.#self));
            notices.set(p, list);
          }
          this.#holderCache.set(id, { id: this.instanceId, at: performance.now() });
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
    if (items.length > 0) this.#fail("claim", new Error(`${items.length} key(s) contended; not claimed`));
    // Notices only to live instances: a dead one's inbox is never read.
    await this.#lookupAlive([...new Set(previous)]);
    for (const id of [...notices.keys()]) if (!this.#isAlive(id)) notices.delete(id);
    return notices;
  }

  /** Our claim of `h` lost to a newer one elsewhere: close the local connection(s), as a claimed notice would. */
  #lostClaim(h: Held): void {
    const sink = this.#sink;
    if (sink === null) return;
    // Not from inside the pump: the sink closes clients, whose release() comes back here.
    queueMicrotask(() => sink.claimed(h.key.slice()));
  }

  /** Routes `out` by holder, adds `direct` messages, and writes one inbox batch per target. */
  async #send(out: Outgoing[], direct: Map<string, Uint8Array[]>): Promise<void> {
    const now = performance.now();
    const unknown = new Map<string, Uint8Array>();
    for (const o of out) {
      const c = this.#holderCache.get(o.dstId);
      // "Held here" is stale by definition: the core forwards only keys it does not have.
      if (
        c === undefined || c.id === this.instanceId ||
        now - c.at > (c.id === null ? NO_HOLDER_CACHE_MS : HOLDER_CACHE_MS)
      ) {
        unknown.set(o.dstId, o.dst);
      }
    }
    if (unknown.size > 0) {
      const ids = [...unknown.keys()];
      const found = await this.#getMany<HolderValue>(ids.map((id) => this.#holderKey(unknown.get(id)!)));
      const at = performance.now();
      ids.forEach((id, i) => this.#holderCache.set(id, { id: holderId(found[i]), at }));
    }
    const holders = new Set<string>();
    for (const o of out) {
      const h = this.#holderCache.get(o.dstId)?.id;
      if (h) holders.add(h);
    }
    await this.#lookupAlive([...holders]);
    const byTarget = direct;
    for (const o of out) {
      const h = this.#holderCache.get(o.dstId)?.id ?? null;
      if (h === null || h === this.instanceId || !this.#isAlive(h)) {
        if (o.datagram) this.stats.unrouted++;
        continue;
      }
      const list = byTarget.get(h) ?? [];
      list.push(o.msg);
      byTarget.set(h, list);
    }
    const commits: Promise<void>[] = [];
    for (const [target, msgs] of byTarget) {
      let batch: Uint8Array[] = [];
      let bytes = 0;
      for (const m of msgs) {
        if (bytes + FRAME_PREFIX_LEN + m.length > BATCH_BYTES && batch.length > 0) {
          commits.push(this.#writeBatch(target, batch));
          batch = [];
          bytes = 0;
        }
        batch.push(m);
        bytes += FRAME_PREFIX_LEN + m.length;
      }
      if (batch.length > 0) commits.push(this.#writeBatch(target, batch));
    }
    await Promise.all(commits);
  }

  /** One batch: its parts and the target's wake sum in one commit. */
  async #writeBatch(target: string, msgs: Uint8Array[]): Promise<void> {
    const bytes = frameMessages(msgs);
    const parts = Math.max(1, Math.ceil(bytes.length / PART_BYTES));
    const ms = this.#wall();
    const seq = ++this.#seq;
    const kv = this.#kv!;
    try {
      await retryLocked(() => {
        const a = kv.atomic();
        for (let i = 0; i < parts; i++) {
          a.set(
            [this.#p, "inbox", target, ms, this.instanceId, seq, i, parts],
            bytes.subarray(i * PART_BYTES, (i + 1) * PART_BYTES),
            { expireIn: INBOX_TTL_MS },
          );
        }
        return a.sum(this.#key("wake", target), 1n).commit();
      });
      this.stats.batchesWritten++;
      this.#lastActivity = performance.now();
    } catch (e) {
      this.#fail(`inbox write to ${target}`, e);
    }
  }

  async #getMany<T>(keys: Deno.KvKey[]): Promise<(T | null)[]> {
    return (await this.#getEntries<T>(keys)).map((e) => e.value);
  }

  async #getEntries<T>(keys: Deno.KvKey[]): Promise<Deno.KvEntryMaybe<T>[]> {
    const kv = this.#kv!;
    const chunks: Promise<Deno.KvEntryMaybe<T>[]>[] = [];
    for (let i = 0; i < keys.length; i += GET_MANY) {
      const part = keys.slice(i, i + GET_MANY);
      chunks.push(retryLocked(() => kv.getMany<T[]>(part)));
    }
    return (await Promise.all(chunks)).flat();
  }

  async #lookupAlive(ids: string[]): Promise<void> {
    const now = performance.now();
    const stale = ids.filter((id) => {
      const c = this.#aliveCache.get(id);
      return c === undefined || now - c.at > ALIVE_CACHE_MS;
    });
    if (stale.length === 0) return;
    const until = await this.#getMany<number>(stale.map((id) => this.#key("alive", id)));
    const wall = this.#wall();
    const at = performance.now();
    stale.forEach((id, i) => {
      const u = until[i];
      this.#aliveCache.set(id, { alive: typeof u === "number" && u > wall, at });
    });
  }

  #isAlive(id: string): boolean {
    return this.#aliveCache.get(id)?.alive ?? false;
  }

  async #heartbeat(): Promise<void> {
    const kv = this.#kv!;
    const until = this.#wall() + ALIVE_TTL_MS;
    await retryLocked(() => kv.set(this.#key("alive", this.instanceId), until, { expireIn: ALIVE_EXPIRE_MS }));
  }

  /** Re-writes our holder entries before they expire; a check per key keeps newer claims elsewhere. */
  async #refreshHolders(): Promise<void> {
    const kv = this.#kv;
    if (kv === null || this.#closed) return;
    const held = [...this.#held.values()].filter((h) => h.vs !== null);
    // CHECKS_PER_COMMIT keys per commit; a batch whose check fails (a key was claimed elsewhere)
    // is redone key by key, so the others still get refreshed.
    for (let i = 0; i < held.length; i += CHECKS_PER_COMMIT) {
      const batch = held.slice(i, i + CHECKS_PER_COMMIT);
      try {
        const ok = await this.#refresh(kv, batch);
        if (!ok) { for (const h of batch) await this.#refresh(kv, [h]); }
      } catch (e) {
        this.#fail("holder refresh", e);
        return;
      }
    }
  }

  async #refresh(kv: Deno.Kv, batch: Held[]): Promise<boolean> {
    const vss = batch.map((h) => h.vs);
    const res = await retryLocked(() => {
      const a = kv.atomic();
      batch.forEach((h, j) => {
        const hk = this.#holderKey(h.key);
        const value: HolderValue = { id: this.instanceId, at: h.at };
        a.check({ key: hk, versionstamp: vss[j]! }).set(hk, value, { expireIn: HOLDER_TTL_MS });
      });
      return a.commit();
    });
    if (!res.ok) return false;
    for (const h of batch) if (h.vs !== null) h.vs = res.versionstamp;
    return true;
  }

  #startWatch(): void {
    const kv = this.#kv!;
    const reader = kv.watch([this.#key("wake", this.instanceId)]).getReader();
    this.#watch = reader;
    (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.#lastWake = value[0]?.versionstamp ?? null;
        this.#drain();
      }
    })().catch((e) => {
      if (this.#closed) return;
      this.#fail("watch", e);
    }).finally(() => {
      // A watch that ends while running (network trouble on Deploy) is restarted; the poll covers the gap.
      if (!this.#closed && this.#watch === reader) setTimeout(() => !this.#closed && this.#startWatch(), 1000);
    });
  }

  #poll(): void {
    if (this.#pollRun !== null || this.#closed || this.#held.size === 0) return;
    // Quiet for a while: poll at a tenth of the rate (see the module doc).
    if (performance.now() - this.#lastActivity > POLL_IDLE_AFTER_MS && ++this.#idleTicks % POLL_IDLE_DIVISOR !== 0) {
      return;
    }
    this.#pollRun = this.#pollOnce().finally(() => this.#pollRun = null);
  }

  async #pollOnce(): Promise<void> {
    try {
      const kv = this.#kv!;
      const e = await retryLocked(() => kv.get(this.#key("wake", this.instanceId)));
      if (e.versionstamp !== this.#lastWake) {
        this.#lastWake = e.versionstamp;
        this.#drain();
      }
    } catch (e) {
      this.#fail("poll", e);
    }
  }

  /** Reads, delivers and deletes inbox batches; one drain at a time, re-run if woken meanwhile. */
  #drain(): void {
    if (this.#draining !== null) {
      this.#drainAgain = true;
      return;
    }
    if (this.#closed) return;
    this.#draining = this.#drainLoop().finally(() => this.#draining = null);
  }

  async #drainLoop(): Promise<void> {
    try {
      do {
        this.#drainAgain = false;
        for (let page = 0; page < DRAIN_PAGES && !this.#closed; page++) {
          if (!await this.#drainPage()) break;
          // A full page: more may wait; after DRAIN_PAGES, go round again (yielding once).
          if (page === DRAIN_PAGES - 1) this.#drainAgain = true;
        }
      } while (this.#drainAgain && !this.#closed);
    } catch (e) {
      this.#fail("inbox read", e);
    }
  }

  /** One page of the inbox; true if the page was full. */
  async #drainPage(): Promise<boolean> {
    const kv = this.#kv!;
    const entries = await retryLocked(async () => {
      const got: Deno.KvEntry<Uint8Array>[] = [];
      for await (
        const e of kv.list<Uint8Array>({ prefix: this.#key("inbox", this.instanceId) }, { limit: LIST_PAGE })
      ) {
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
        this.stats.malformed++;
        continue;
      }
      this.stats.batchesRead++;
      this.#lastActivity = performance.now();
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
    const sink = this.#sink;
    if (sink === null) return;
    let msgs: Uint8Array[];
    try {
      msgs = unframeMessages(batch);
    } catch {
      this.stats.malformed++;
      return;
    }
    for (const m of msgs) {
      try {
        dispatchMesh(m, sink, this.#self);
      } catch {
        this.stats.malformed++;
      }
    }
  }

  /** Counts a failed KV operation and logs it, at most once a second. */
  #fail(what: string, e: unknown): void {
    // After close, operations still in flight fail on the closed database: not news.
    if (this.#closed) return;
    this.stats.errors++;
    const now = performance.now();
    if (now - this.#lastWarn < 1000) return;
    this.#lastWarn = now;
    this.#log.warn(`mesh kv: ${what} failed: ${(e as Error).message}`);
  }
}

/** Attempts of an operation that failed with SQLite's "database is locked", and the first wait, ms. */
const LOCKED_ATTEMPTS = 8;
const LOCKED_WAIT_MS = 2;

/**
 * Runs `op`, again (with doubling waits, ~0.5 s in all) while it fails with
 * "database is locked": on a local file, handles in other processes (or
 * this one) take SQLite's write lock in turns and Deno KV does not wait for
 * it. There is no event for the lock's release, so this is a timed retry.
 * Deploy's KV does not fail this way.
 */
async function retryLocked<T>(op: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await op();
    } catch (e) {
      if (attempt >= LOCKED_ATTEMPTS || !/database is locked/i.test((e as Error)?.message ?? "")) throw e;
      await new Promise((r) => setTimeout(r, LOCKED_WAIT_MS << (attempt - 1)));
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

async function withDeadline(p: Promise<unknown>, ms: number): Promise<void> {
  let t: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p.then(() => {}, () => {}), new Promise<void>((r) => t = setTimeout(r, ms))]);
  clearTimeout(t);
}
