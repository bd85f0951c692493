/**
 * @module
 * Per-sender deposit rate limit: a token bucket per origin server name,
 * refilled at `perSecond` up to `burst`. The table is bounded: past
 * `maxSenders` tracked origins, the one idle longest is forgotten (a
 * forgotten sender starts again with a full bucket, which only matters
 * under a flood of distinct keys, which the total-size quota bounds).
 * The clock is injected.
 */

/** Options of {@link SenderLimiter}. */
export interface SenderLimitOptions {
  /** Sustained deposits per second per sender. */
  perSecond: number;
  /** Deposits a sender may make at once. */
  burst: number;
  /** Most senders tracked. Default 100 000. */
  maxSenders?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** See the module doc. */
export class SenderLimiter {
  readonly #o: Required<SenderLimitOptions>;
  // Map order is insertion order: a sender is re-inserted on each use, so the first key is the idlest.
  readonly #buckets = new Map<string, Bucket>();

  /** @param opts see {@link SenderLimitOptions} */
  constructor(opts: SenderLimitOptions) {
    this.#o = { maxSenders: 100_000, ...opts };
  }

  /**
   * Takes one token for `origin` at `nowMs`. Returns 0 if allowed, else how
   * long until a token is available, ms.
   */
  take(origin: string, nowMs: number): number {
    let b = this.#buckets.get(origin);
    if (b === undefined) {
      b = { tokens: this.#o.burst, at: nowMs };
      if (this.#buckets.size >= this.#o.maxSenders) this.#buckets.delete(this.#buckets.keys().next().value!);
    } else {
      this.#buckets.delete(origin);
      b.tokens = Math.min(this.#o.burst, b.tokens + ((nowMs - b.at) / 1000) * this.#o.perSecond);
      b.at = nowMs;
    }
    this.#buckets.set(origin, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) / this.#o.perSecond) * 1000);
  }

  /** Senders currently tracked. */
  get size(): number {
    return this.#buckets.size;
  }
}
