/**
 * @module
 * The sending side of the Deno KV mesh. Messages (`forward`, `gone`) queue
 * in memory (bounded, 4 MiB by default) and one pump writes them: it first
 * writes the directory's waiting releases and claims, then looks up each
 * destination's holder (cached 1 s) and whether that instance is alive
 * (cached 2 s), frames the messages per target (`codec.ts`) and writes each
 * batch, split into parts under KV's 64 KiB value limit, in ONE atomic
 * commit together with a `sum` on the target's wake key
 * (`[P, "inbox", id, ms, writer, seq, part, parts]`, `expireIn` 60 s). While
 * a commit is in flight new messages accumulate, so under load the writes
 * batch by themselves.
 */

import { KEY_LEN, keyId } from "../relay/mod.ts";
import { FRAME_PREFIX_LEN, frameMessages } from "./codec.ts";
import { type KvContext, retryLocked } from "./kv_context.ts";
import type { HolderDirectory } from "./kv_directory.ts";
import type { Liveness } from "./kv_liveness.ts";

/** Unread inbox entries (of a dead instance) expire after, ms. */
const INBOX_TTL_MS = 60_000;
/** Bytes per inbox entry: under KV's 65,536-byte value limit. */
const PART_BYTES = 60_000;
/** Bytes of messages per inbox batch (one commit; KV allows 800 KiB of mutations per commit). */
const BATCH_BYTES = 256 * 1024;
/** Default cap of queued outgoing bytes. */
export const DEFAULT_PENDING_BYTES = 4 * 1024 * 1024;

/** One outgoing message routed by its destination key. */
interface Outgoing {
  dstId: string;
  dst: Uint8Array;
  msg: Uint8Array;
  datagram: boolean;
}

/** The queue and its pump; see the module doc. */
export class Outbox {
  readonly #ctx: KvContext;
  readonly #dir: HolderDirectory;
  readonly #alive: Liveness;
  readonly #maxPending: number;
  // Owned by the hot path (producers) and #pump (consumer).
  #out: Outgoing[] = [];
  #outBytes = 0;
  #pumping: Promise<void> | null = null;
  #seq = 0;

  /**
   * @param ctx the mesh's shared state
   * @param dir the holder directory (its claims and releases ride on the pump)
   * @param alive liveness of other instances
   * @param maxPending cap of queued bytes
   */
  constructor(ctx: KvContext, dir: HolderDirectory, alive: Liveness, maxPending: number) {
    this.#ctx = ctx;
    this.#dir = dir;
    this.#alive = alive;
    this.#maxPending = maxPending;
  }

  /** The pump in flight, if any. */
  get pumping(): Promise<void> | null {
    return this.#pumping;
  }

  /** Queues `msg` for the holder of `dst`; over the cap it is dropped and counted. */
  enqueue(dst: Uint8Array, msg: Uint8Array, datagram: boolean): void {
    if (this.#ctx.closed || this.#outBytes + msg.length > this.#maxPending) {
      this.#ctx.stats.overflow++;
      return;
    }
    const d = dst.slice(0, KEY_LEN);
    this.#out.push({ dstId: keyId(d), dst: d, msg, datagram });
    this.#outBytes += msg.length;
    this.schedule();
  }

  #hasWork(): boolean {
    return this.#out.length > 0 || this.#dir.hasWork;
  }

  /** Starts the pump unless it runs; it picks up everything queued meanwhile. */
  schedule(): void {
    if (this.#pumping !== null || this.#ctx.closed || this.#ctx.kv === null) return;
    // A microtask: every datagram of the chunk being read joins the first batch.
    this.#pumping = Promise.resolve().then(() => this.#pump()).finally(() => {
      this.#pumping = null;
      if (this.#hasWork()) this.schedule();
    });
  }

  async #pump(): Promise<void> {
    while (this.#hasWork() && !this.#ctx.closed) {
      const notices = await this.#dir.apply();
      const out = this.#out;
      this.#out = [];
      this.#outBytes = 0;
      try {
        await this.#send(out, notices);
      } catch (e) {
        this.#ctx.fail("send", e);
      }
    }
  }

  /** Routes `out` by holder, adds `direct` messages, and writes one inbox batch per target. */
  async #send(out: Outgoing[], direct: Map<string, Uint8Array[]>): Promise<void> {
    const ctx = this.#ctx;
    await this.#dir.lookup(new Map(out.map((o) => [o.dstId, o.dst])));
    const holders = new Set<string>();
    for (const o of out) {
      const h = this.#dir.holderOf(o.dstId);
      if (h) holders.add(h);
    }
    await this.#alive.lookup([...holders]);
    const byTarget = direct;
    for (const o of out) {
      const h = this.#dir.holderOf(o.dstId);
      if (h === null || h === ctx.instanceId || !this.#alive.isAlive(h)) {
        if (o.datagram) ctx.stats.unrouted++;
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
    const ctx = this.#ctx;
    const bytes = frameMessages(msgs);
    const parts = Math.max(1, Math.ceil(bytes.length / PART_BYTES));
    const ms = ctx.wall();
    const seq = ++this.#seq;
    const kv = ctx.db;
    try {
      await retryLocked(() => {
        const a = kv.atomic();
        for (let i = 0; i < parts; i++) {
          a.set(
            [ctx.prefix, "inbox", target, ms, ctx.instanceId, seq, i, parts],
            bytes.subarray(i * PART_BYTES, (i + 1) * PART_BYTES),
            { expireIn: INBOX_TTL_MS },
          );
        }
        return a.sum(ctx.key("wake", target), 1n).commit();
      });
      ctx.stats.batchesWritten++;
      ctx.lastActivity = performance.now();
    } catch (e) {
      ctx.fail(`inbox write to ${target}`, e);
    }
  }
}
