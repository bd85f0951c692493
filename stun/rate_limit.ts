/**
 * @module
 * Per-source STUN request limit with bounded memory. UDP sources can be
 * spoofed, so this is what stops the STUN port being used to aim replies
 * at a victim, and what stops one host from costing us more than a few
 * replies per second.
 *
 * - One token bucket per source IP (ports are free to vary), `perSecond`
 *   refill, `burst` capacity.
 * - At most `maxSources` buckets. A bucket that has refilled completely is
 *   the same as no bucket, so when the table is full such entries are
 *   pruned (at most one scan per second); if none can go, the request is
 *   refused: a spoofed flood from many addresses costs replies to new
 *   sources for a moment, never memory.
 * - A global bucket caps the total reply rate whatever the sources.
 *
 * Pure: the clock comes in as `now` (ms).
 */

/** Limits of {@link StunRateLimit}. */
export interface StunRateLimitOptions {
  /** Requests per second per source IP. */
  perSecond: number;
  /** Burst per source IP. */
  burst: number;
  /** Requests per second over all sources. */
  globalPerSecond: number;
  /** Distinct sources remembered at once. */
  maxSources: number;
}

/** Defaults: iroh 0.35 sends a handful of Binding requests per net report (every few seconds). */
export const DEFAULT_STUN_RATE_LIMIT: StunRateLimitOptions = {
  perSecond: 10,
  burst: 20,
  globalPerSecond: 5000,
  maxSources: 16384,
};

interface Bucket {
  tokens: number;
  last: number;
}

/** Decides, per datagram, whether a source may get a reply now. */
export class StunRateLimit {
  readonly #o: StunRateLimitOptions;
  readonly #sources = new Map<string, Bucket>();
  readonly #global: Bucket;
  #lastPrune = -Infinity;

  /** @param opts limits; @param now current time, ms */
  constructor(opts: StunRateLimitOptions, now: number) {
    this.#o = opts;
    this.#global = { tokens: opts.globalPerSecond, last: now };
  }

  /** Sources currently remembered. */
  get size(): number {
    return this.#sources.size;
  }

  /**
   * Takes one token for `source` (an IP text); false if it must be dropped.
   * @param source the sender's IP
   * @param now current time, ms
   */
  allow(source: string, now: number): boolean {
    let b = this.#sources.get(source);
    if (b === undefined) {
      if (this.#sources.size >= this.#o.maxSources && !this.#prune(now)) return false;
      b = { tokens: this.#o.burst, last: now };
      this.#sources.set(source, b);
    }
    refill(b, now, this.#o.perSecond, this.#o.burst);
    if (b.tokens < 1) return false;
    refill(this.#global, now, this.#o.globalPerSecond, this.#o.globalPerSecond);
    if (this.#global.tokens < 1) return false;
    b.tokens -= 1;
    this.#global.tokens -= 1;
    return true;
  }

  /** Forgets full buckets; true if there is room afterwards. */
  #prune(now: number): boolean {
    if (now - this.#lastPrune < 1000) return false;
    this.#lastPrune = now;
    for (const [k, b] of this.#sources) {
      refill(b, now, this.#o.perSecond, this.#o.burst);
      if (b.tokens >= this.#o.burst) this.#sources.delete(k);
    }
    return this.#sources.size < this.#o.maxSources;
  }
}

function refill(b: Bucket, now: number, rate: number, cap: number): void {
  if (now > b.last) {
    b.tokens = Math.min(cap, b.tokens + ((now - b.last) * rate) / 1000);
    b.last = now;
  }
}
