/**
 * @module
 * Per-connection receive rate limit (`[limits.client.rx]`): a byte token
 * bucket that holds each frame until it conforms.
 *
 * One rule serves both generations' tests (spec §4): a frame costs its wire
 * size; it may pass once the bucket holds `min(cost, burst)` tokens, then
 * its full cost is taken, so a frame larger than the burst passes when the
 * bucket is full (upstream logs an error and lets it through) and the next
 * one waits. Errors are never rate-limited: only frames are charged.
 */

/** A byte token bucket; times are milliseconds from an injected clock. */
export class ByteBucket {
  #rate: number;
  #burst: number;
  #tokens: number;
  #last: number;

  /**
   * @param bytesPerSecond refill rate
   * @param burst capacity; the bucket starts full
   * @param now current time, ms
   */
  constructor(bytesPerSecond: number, burst: number, now: number) {
    this.#rate = bytesPerSecond;
    this.#burst = burst;
    this.#tokens = burst;
    this.#last = now;
  }

  #refill(now: number): void {
    if (now > this.#last) {
      this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) * this.#rate) / 1000);
      this.#last = now;
    }
  }

  /**
   * Milliseconds to wait before a frame of `cost` bytes may pass (0 = now).
   * Does not take tokens: call {@link take} when the frame is let through.
   */
  delayFor(cost: number, now: number): number {
    this.#refill(now);
    const need = Math.min(cost, this.#burst);
    if (this.#tokens >= need) return 0;
    return Math.ceil(((need - this.#tokens) * 1000) / this.#rate);
  }

  /** Takes the cost of a frame that is let through. */
  take(cost: number, now: number): void {
    this.#refill(now);
    this.#tokens -= cost;
  }
}
