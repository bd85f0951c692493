/**
 * @module
 * What keeps password guessing from hurting anyone but the guesser (issue 9),
 * as pure parts the standalone listener wires up:
 *
 * - {@link CheckQueue}: at most `concurrency` password checks run at once
 *   (PBKDF2 runs on Deno's thread pool, off the event loop, but each one
 *   takes a core for ~0.1–0.3 s); at most `maxPending` wait, and one source
 *   may hold at most a quarter of those places. Waiting checks are served
 *   round-robin by source, so a crowd of guessing sessions from one address
 *   delays a real user's check by about one check, not by the whole crowd.
 *   Sources without recent failures are served first. When the queue is
 *   full, a clean source, or one holding fewer places than the biggest
 *   holder, takes the newest place of a failing source; a check that finds
 *   no place is refused at once (`NO [UNAVAILABLE]`).
 * - {@link FailureBackoff}: a growing wait before each check from a source
 *   with recent failures, in a map of bounded size (oldest source evicted).
 * - {@link quoteForLog} and {@link sourceKey}: the fail2ban line's user name
 *   cannot forge log lines, and IPv6 clients are grouped by /64.
 *
 * No timers or `Deno.*`: the clock is passed in, sleeping is the caller's.
 */

/** Limits of a {@link CheckQueue}. */
export interface CheckQueueLimits {
  /** Checks running at once. */
  concurrency: number;
  /** Checks waiting, all sources together. */
  maxPending: number;
}

/** Why {@link CheckQueue.run} did not run the work. */
export type NotRun = "unavailable" | "aborted";

interface Waiter {
  source: string;
  cls: 0 | 1;
  start: () => void;
  abandon: (why: NotRun) => void;
}

/**
 * A bounded, per-source-fair queue in front of an expensive async check.
 *
 * @example
 * ```ts
 * import { CheckQueue } from "./login_guard.ts";
 * const q = new CheckQueue({ concurrency: 1, maxPending: 4 });
 * const r = await q.run("192.0.2.1", new AbortController().signal, () => Promise.resolve(true));
 * if (r !== true) throw new Error(String(r));
 * ```
 */
export class CheckQueue {
  readonly #limits: CheckQueueLimits;
  readonly #perSource: number;
  /** Waiting checks by source, favoured class first; Map order is the round-robin order. */
  readonly #waiting: [favoured: Map<string, Waiter[]>, normal: Map<string, Waiter[]>] = [new Map(), new Map()];
  #pending = 0;
  #running = 0;
  #closed = false;

  /** @param limits concurrency and queue size (each at least 1) */
  constructor(limits: CheckQueueLimits) {
    this.#limits = { concurrency: Math.max(1, limits.concurrency), maxPending: Math.max(1, limits.maxPending) };
    this.#perSource = Math.max(1, Math.ceil(this.#limits.maxPending / 4));
  }

  /** Checks running now. */
  get running(): number {
    return this.#running;
  }

  /** Checks waiting now. */
  get pending(): number {
    return this.#pending;
  }

  /**
   * Runs `work` when a place is free.
   *
   * @param source who asks (a {@link sourceKey}); fairness and the per-source share go by it
   * @param signal the session ended: a waiting check is dropped (a running one finishes, unawaited)
   * @param favoured the source has no recent failures: served before the others, and when the queue is full it
   *   takes the place of a check from a source that has
   * @returns what `work` returned, `"unavailable"` when the queue (or this source's share) is full,
   *   `"aborted"` when `signal` fired or the queue was closed first
   */
  async run<T>(source: string, signal: AbortSignal, work: () => Promise<T>, favoured = false): Promise<T | NotRun> {
    if (this.#closed || signal.aborted) return "aborted";
    if (this.#running >= this.#limits.concurrency || this.#pending > 0) {
      const cls = favoured ? 0 : 1;
      const mine = (this.#waiting[0].get(source)?.length ?? 0) + (this.#waiting[1].get(source)?.length ?? 0);
      if (mine >= this.#perSource) return "unavailable";
      if (this.#pending >= this.#limits.maxPending && !this.#evictFor(mine, favoured)) return "unavailable";
      const got = await new Promise<"go" | NotRun>((resolve) => {
        const onAbort = () => {
          this.#remove(w);
          resolve("aborted");
        };
        const w: Waiter = {
          source,
          cls,
          start: () => {
            signal.removeEventListener("abort", onAbort);
            resolve("go");
          },
          abandon: (why) => {
            signal.removeEventListener("abort", onAbort);
            resolve(why);
          },
        };
        signal.addEventListener("abort", onAbort, { once: true });
        const map = this.#waiting[cls];
        const list = map.get(source);
        if (list) list.push(w);
        else map.set(source, [w]);
        this.#pending++;
      });
      if (got !== "go") return got;
    } else {
      this.#running++;
    }
    try {
      return await work();
    } finally {
      this.#running--;
      this.#dispatch();
    }
  }

  /** Drops every waiting check (`"aborted"`) and refuses new ones: shutdown does not wait for them. */
  close(): void {
    this.#closed = true;
    const all = this.#waiting.flatMap((m) => [...m.values()].flat());
    for (const m of this.#waiting) m.clear();
    this.#pending = 0;
    for (const w of all) w.abandon("aborted");
  }

  /** Starts waiting checks while places are free: favoured sources first, sources in turn within a class. */
  #dispatch(): void {
    while (this.#running < this.#limits.concurrency && this.#pending > 0) {
      const map = this.#waiting[0].size > 0 ? this.#waiting[0] : this.#waiting[1];
      const [source, list] = map.entries().next().value as [string, Waiter[]];
      const w = list.shift()!;
      map.delete(source);
      // Back of the line for this source's next check.
      if (list.length > 0) map.set(source, list);
      this.#pending--;
      this.#running++;
      w.start();
    }
  }

  /**
   * The queue is full: drop the newest waiter of the source holding the
   * most places in the normal class, if the asker is favoured or that
   * source holds at least two more places than the asker (longest-queue
   * drop); a favoured asker may also displace a favoured source holding
   * two more. So a crowd spread over fewer sources than `maxPending` cannot
   * keep a new source out, and failing sources cannot keep out a clean one.
   * @returns true if a place was freed
   */
  #evictFor(mine: number, favoured: boolean): boolean {
    const longestIn = (map: Map<string, Waiter[]>) => {
      let longest: Waiter[] | undefined;
      // Ties go to the source served last, so sources already waiting longest keep their turn.
      for (const list of map.values()) if (longest === undefined || list.length >= longest.length) longest = list;
      return longest;
    };
    const normal = longestIn(this.#waiting[1]);
    let victim: Waiter[] | undefined;
    if (normal !== undefined && (favoured || normal.length >= mine + 2)) victim = normal;
    else if (favoured) {
      const fav = longestIn(this.#waiting[0]);
      if (fav !== undefined && fav.length >= mine + 2) victim = fav;
    }
    if (victim === undefined) return false;
    const w = victim.at(-1)!;
    this.#remove(w);
    w.abandon("unavailable");
    return true;
  }

  #remove(w: Waiter): void {
    const map = this.#waiting[w.cls];
    const list = map.get(w.source);
    const i = list?.indexOf(w) ?? -1;
    if (list === undefined || i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) map.delete(w.source);
    this.#pending--;
  }
}

/** Settings of a {@link FailureBackoff}. */
export interface BackoffOptions {
  /** Failures from a source that cost no wait (typos happen). */
  freeFailures: number;
  /** Wait after the first failure past the free ones, ms; doubles with each further failure. */
  baseMs: number;
  /** Longest wait, ms. */
  maxMs: number;
  /** A source with no failure for this long starts over, ms. */
  forgetMs: number;
  /** Most sources remembered; the one that failed longest ago is dropped first. */
  maxSources: number;
}

/** Defaults: 3 free failures, then 0.5 s doubling up to 15 s; forgotten after 15 min; 10 000 sources (~1 MB). */
export const DEFAULT_BACKOFF: BackoffOptions = {
  freeFailures: 3,
  baseMs: 500,
  maxMs: 15_000,
  forgetMs: 15 * 60_000,
  maxSources: 10_000,
};

/**
 * Per-source login failure memory: how long a source must wait before its
 * next password check.
 *
 * @example
 * ```ts
 * import { FailureBackoff } from "./login_guard.ts";
 * const b = new FailureBackoff({ freeFailures: 0, baseMs: 100, maxMs: 1000, forgetMs: 60_000, maxSources: 10 });
 * b.failed("192.0.2.1", 0);
 * if (b.waitMs("192.0.2.1", 0) !== 100 || b.waitMs("192.0.2.9", 0) !== 0) throw new Error("backoff");
 * ```
 */
export class FailureBackoff {
  readonly #o: BackoffOptions;
  /** Map order: least recently failed first. */
  readonly #sources = new Map<string, { failures: number; last: number }>();

  /** @param opts see {@link BackoffOptions} */
  constructor(opts: BackoffOptions = DEFAULT_BACKOFF) {
    this.#o = opts;
  }

  /** Sources remembered now. */
  get size(): number {
    return this.#sources.size;
  }

  /** How long `source` must still wait at time `now` (ms) before its next check. */
  waitMs(source: string, now: number): number {
    const s = this.#sources.get(source);
    if (s === undefined) return 0;
    if (now - s.last >= this.#o.forgetMs) {
      this.#sources.delete(source);
      return 0;
    }
    const over = s.failures - this.#o.freeFailures;
    if (over <= 0) return 0;
    const delay = Math.min(this.#o.maxMs, this.#o.baseMs * 2 ** Math.min(over - 1, 30));
    return Math.max(0, s.last + delay - now);
  }

  /** True if `source` has failures on record at time `now` (its checks are not favoured). */
  hasFailures(source: string, now: number): boolean {
    const s = this.#sources.get(source);
    return s !== undefined && now - s.last < this.#o.forgetMs;
  }

  /** Records a failed check. */
  failed(source: string, now: number): void {
    const s = this.#sources.get(source);
    const fresh = s === undefined || now - s.last >= this.#o.forgetMs;
    this.#sources.delete(source);
    this.#sources.set(source, { failures: fresh ? 1 : s.failures + 1, last: now });
    while (this.#sources.size > this.#o.maxSources) {
      this.#sources.delete(this.#sources.keys().next().value!);
    }
  }

  /** A successful login clears the source's record. */
  succeeded(source: string): void {
    this.#sources.delete(source);
  }
}

/**
 * A client-chosen string for a log line: double-quoted, `"` and `\`
 * escaped, anything outside printable ASCII as `\xNN` or `\u{N}`, cut at
 * `max` characters. A hostile user name thus cannot end the line, fake a
 * second one, or confuse a fail2ban pattern.
 *
 * @example
 * ```ts
 * import { quoteForLog } from "./login_guard.ts";
 * if (quoteForLog('x"\n1.2.3.4') !== '"x\\"\\x0a1.2.3.4"') throw new Error(quoteForLog('x"\n1.2.3.4'));
 * ```
 */
export function quoteForLog(s: string, max = 64): string {
  let out = '"';
  let n = 0;
  for (const ch of s) {
    if (n++ >= max) {
      out += "...";
      break;
    }
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (c >= 0x20 && c < 0x7f) out += ch;
    else if (c < 0x100) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += `\\u{${c.toString(16)}}`;
  }
  return out + '"';
}

/**
 * The key a source is counted under: an IPv4 address as is, an IPv6
 * address by its /64 (one customer's network), an IPv4-mapped IPv6 address
 * as the IPv4 address.
 */
export function sourceKey(ip: string): string {
  const host = ip.startsWith("[") && ip.endsWith("]") ? ip.slice(1, -1) : ip;
  if (!host.includes(":")) return host;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped) return mapped[1]!;
  const zone = host.indexOf("%");
  const addr = (zone >= 0 ? host.slice(0, zone) : host).toLowerCase();
  const [head = "", tail = ""] = addr.split("::", 2);
  const left = head === "" ? [] : head.split(":");
  const right = tail === "" ? [] : tail.split(":");
  const groups = addr.includes("::")
    ? [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right]
    : left;
  return groups.slice(0, 4).map((g) => (g === "" ? "0" : g.replace(/^0+(?=.)/, ""))).join(":") + "::/64";
}
