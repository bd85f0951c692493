/**
 * @module
 * The per-IP limit on `PUT /pkarr` (spec §1.6, `http/rate_limiting.rs
 * @v1.0.3`): tower_governor's `per_second(4)` + `burst_size(2)`, which
 * means a burst of 2, then one PUT every 4 s per IP. Pure (the clock is
 * passed in).
 *
 * - `simple` keys by the peer address; `smart` by `X-Forwarded-For` (first
 *   address), then `X-Real-IP`, then `Forwarded: for=`, else the peer, for
 *   deployments behind a reverse proxy. With `smart` and no proxy a client
 *   can pick its own key, as upstream; the README says so.
 * - Memory is bounded: at most {@link MAX_TRACKED_IPS} addresses; when
 *   full, the longest-untouched one is dropped (it only regains its burst).
 */

/** Seconds per token and burst, as upstream. */
export const PUT_PERIOD_MS = 4000;
/** See {@link PUT_PERIOD_MS}. */
export const PUT_BURST = 2;
/** Addresses tracked at once. */
export const MAX_TRACKED_IPS = 100_000;

/** GCRA state per key: the theoretical arrival time, ms. */
export class PutRateLimiter {
  readonly #tat = new Map<string, number>();
  readonly #period: number;
  readonly #burst: number;
  readonly #max: number;

  /** @param opts period (ms per token), burst, tracked-key cap; defaults as upstream */
  constructor(opts: { periodMs?: number; burst?: number; maxKeys?: number } = {}) {
    this.#period = opts.periodMs ?? PUT_PERIOD_MS;
    this.#burst = opts.burst ?? PUT_BURST;
    this.#max = opts.maxKeys ?? MAX_TRACKED_IPS;
  }

  /**
   * Takes one token for `key` at time `now` (ms).
   * @returns 0 if allowed, else the milliseconds until the next PUT would be
   */
  take(key: string, now: number): number {
    const tat = Math.max(this.#tat.get(key) ?? now, now);
    const allowAt = tat - (this.#burst - 1) * this.#period;
    if (now < allowAt) return allowAt - now;
    this.#tat.delete(key); // re-insert: Map order becomes least-recently-used first
    this.#tat.set(key, tat + this.#period);
    if (this.#tat.size > this.#max) this.#tat.delete(this.#tat.keys().next().value!);
    return 0;
  }

  /** Keys tracked now. */
  get size(): number {
    return this.#tat.size;
  }
}

/** Strips brackets and a port from an address text; returns "" if nothing is left. */
function bareIp(text: string): string {
  let t = text.trim().replace(/^"|"$/g, "");
  if (t.startsWith("[")) return t.slice(1, t.indexOf("]") > 0 ? t.indexOf("]") : undefined);
  // IPv4 with a port ("1.2.3.4:5"); an IPv6 address has several colons and no port here.
  if (t.split(":").length === 2) t = t.slice(0, t.indexOf(":"));
  return t.slice(0, 64);
}

/**
 * The rate-limit key of a request: the peer address (`simple`), or the
 * client address a proxy forwarded (`smart`).
 */
export function clientKey(mode: "simple" | "smart", headers: Headers, peer: string): string {
  if (mode === "smart") {
    const xff = headers.get("x-forwarded-for");
    if (xff) {
      const first = bareIp(xff.split(",")[0] ?? "");
      if (first) return first;
    }
    const real = headers.get("x-real-ip");
    if (real && bareIp(real)) return bareIp(real);
    const fwd = headers.get("forwarded");
    const m = fwd ? /for=("[^"]*"|[^;,\s]+)/i.exec(fwd) : null;
    if (m && bareIp(m[1]!)) return bareIp(m[1]!);
  }
  return peer;
}
