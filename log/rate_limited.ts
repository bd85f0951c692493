/**
 * @module
 * Rate-limited log lines for events a peer can trigger (a replayed
 * handshake, a refused client, a failing access hook): without a limit, one
 * unauthenticated client opening connections in a loop writes a line per
 * connection, about 0.8 GB of log an hour.
 *
 * Each line names a *key*, a fixed category chosen by the code (never text
 * from the peer), with its own token bucket: a burst of lines goes out
 * as usual, then lines of that key are allowed at a steady low rate and the
 * rest are counted. One summary line per key, `N similar line(s)
 * suppressed in the last S s (first: …)`, is written when the summary period
 * after the first suppressed line ends. Every suppressed line also counts
 * in {@link suppressedLogLines} (`log_lines_suppressed_total`).
 */

import type { Level, Logger } from "./mod.ts";

/** Options of {@link RateLimitedLog}. */
export interface RateLimitedLogOptions {
  /** Lines of one key written back to back before limiting starts. Default 10. */
  burst?: number;
  /** Lines per second of one key allowed after the burst. Default 1. */
  perSecond?: number;
  /** Period of the summary lines, ms. Default 60 000. */
  summaryMs?: number;
  /** Clock, ms. Default `performance.now`. */
  now?: () => number;
}

/** Default burst per key, lines. */
export const LOG_BURST = 10;
/** Default steady rate per key, lines per second. */
export const LOG_PER_SECOND = 1;
/** Default summary period, ms. */
export const LOG_SUMMARY_MS = 60_000;
/** Most keys one limiter tracks: keys are code constants, so more means a bug; extra keys share one bucket. */
const MAX_KEYS = 256;
const OVERFLOW_KEY = "(other)";

let suppressedTotal = 0;

/** Lines dropped by every {@link RateLimitedLog} in this process (the `log_lines_suppressed_total` counter). */
export function suppressedLogLines(): number {
  return suppressedTotal;
}

interface KeyState {
  tokens: number;
  at: number;
  suppressed: number;
  level: Level;
  last: string;
}

/** See the module doc. */
export class RateLimitedLog {
  readonly #log: Logger;
  readonly #burst: number;
  readonly #rate: number;
  readonly #summaryMs: number;
  readonly #now: () => number;
  readonly #keys = new Map<string, KeyState>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #windowStart = 0;
  /** Lines this limiter dropped. */
  suppressed = 0;

  /** @param log where lines go; @param opts limits (defaults suit a public service) */
  constructor(log: Logger, opts: RateLimitedLogOptions = {}) {
    this.#log = log;
    this.#burst = opts.burst ?? LOG_BURST;
    this.#rate = opts.perSecond ?? LOG_PER_SECOND;
    this.#summaryMs = opts.summaryMs ?? LOG_SUMMARY_MS;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** The logger lines go to (for lines no peer can trigger). */
  get log(): Logger {
    return this.#log;
  }

  /**
   * Writes `msg` at `level` unless `key` is over its budget; then counts it.
   * A function `msg` is only called when the line is written (or is the
   * last one kept for the summary), so hot paths build no string for
   * dropped lines.
   */
  line(level: Level, key: string, msg: string | (() => string)): void {
    if (level === "debug" && !this.#log.debugEnabled) return;
    const now = this.#now();
    let s = this.#keys.get(key);
    if (s === undefined) {
      if (this.#keys.size >= MAX_KEYS) key = OVERFLOW_KEY;
      s = this.#keys.get(key);
      if (s === undefined) {
        s = { tokens: this.#burst, at: now, suppressed: 0, level, last: "" };
        this.#keys.set(key, s);
      }
    }
    s.tokens = Math.min(this.#burst, s.tokens + (now - s.at) * this.#rate / 1000);
    s.at = now;
    if (s.tokens >= 1) {
      s.tokens--;
      this.#log[level](typeof msg === "string" ? msg : msg());
      return;
    }
    s.suppressed++;
    s.level = level;
    this.suppressed++;
    suppressedTotal++;
    // The text of the last dropped line is kept only for the summary; build it at most once per period.
    if (s.suppressed === 1) s.last = typeof msg === "string" ? msg : msg();
    if (this.#timer === undefined) {
      this.#windowStart = now;
      this.#timer = setTimeout(() => this.flush(), this.#summaryMs);
      Deno.unrefTimer(this.#timer as unknown as number);
    }
  }

  /** Writes `msg` at info under `key`'s budget. */
  info(key: string, msg: string | (() => string)): void {
    this.line("info", key, msg);
  }

  /** Writes `msg` at warn under `key`'s budget. */
  warn(key: string, msg: string | (() => string)): void {
    this.line("warn", key, msg);
  }

  /** Writes the summary lines now (the timer does this every summary period while lines are dropped). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const secs = Math.max(1, Math.round((this.#now() - this.#windowStart) / 1000));
    for (const s of this.#keys.values()) {
      if (s.suppressed === 0) continue;
      const n = s.suppressed;
      s.suppressed = 0;
      this.#log[s.level](`${n} similar line${n === 1 ? "" : "s"} suppressed in the last ${secs} s (first: ${s.last})`);
    }
  }

  /** Writes pending summaries and stops the timer (service shutdown). */
  close(): void {
    this.flush();
  }
}
