/**
 * @module
 * The admission decision for one listener (or a group of listeners sharing
 * limits), pure: a source address and the time in, a {@link Ticket} or a
 * refusal reason out. No sockets, no timers: the caller passes `now` (ms).
 *
 * Per source (see {@link sourceKey}):
 * - at most `maxPerSource` connections open at once (`source_connections`);
 * - new connections through a token bucket of `perSecond` / `burst`
 *   (`source_rate`); refused attempts take no token.
 * Globally:
 * - at most `maxConnections` open (`global`), and once fewer than `reserve`
 *   slots remain only sources holding fewer than {@link RESERVE_SOURCE_MAX}
 *   connections get one, so a flood from a few sources cannot take the last
 *   slots from everyone else.
 *
 * Memory is bounded by configuration, not by how many addresses an attacker
 * has: a source with open connections is always tracked (at most
 * `maxConnections` of them); a source with none is kept only for its rate
 * history, in an LRU of at most `maxIdleSources` entries, and dropped as soon
 * as its bucket is full again (then it is equivalent to an unknown source).
 */

import { sourceKey } from "./source_key.ts";

/** Sources holding fewer than this many connections may still use the reserve. */
export const RESERVE_SOURCE_MAX = 4;
/** Default cap on idle sources remembered for their rate history. */
export const DEFAULT_MAX_IDLE_SOURCES = 65_536;

/** Limits of one gate; the config sections map onto it. */
export interface AdmissionLimits {
  /** Connections open at once, all sources. */
  maxConnections: number;
  /** Slots kept for sources holding fewer than {@link RESERVE_SOURCE_MAX} connections. */
  reserve: number;
  /** Connections open at once per source. */
  maxPerSource: number;
  /** New connections per second per source (token refill rate). */
  perSecond: number;
  /** Token bucket capacity per source. */
  burst: number;
  /** Idle sources remembered (default {@link DEFAULT_MAX_IDLE_SOURCES}). */
  maxIdleSources?: number;
}

/** Why a connection was refused; the metric label. */
export type RefusalReason = "source_connections" | "source_rate" | "global";

/** Per-source state. */
interface Source {
  open: number;
  tokens: number;
  last: number;
}

/** An admitted connection's slot; {@link release} it when the connection ends (idempotent). */
export class Ticket {
  #gate: AdmissionGate | null;
  /** The source key the slot is counted under. */
  readonly source: string;

  /** @internal created by {@link AdmissionGate.admit} */
  constructor(gate: AdmissionGate, source: string) {
    this.#gate = gate;
    this.source = source;
  }

  /** Gives the slot back. Calling it again does nothing. */
  release(): void {
    const g = this.#gate;
    if (g === null) return;
    this.#gate = null;
    g.release(this.source);
  }
}

/**
 * Per-source and global connection admission; see the module doc.
 *
 * @example
 * ```ts
 * import { AdmissionGate } from "./gate.ts";
 * const gate = new AdmissionGate({ maxConnections: 10, reserve: 2, maxPerSource: 1, perSecond: 1, burst: 5 });
 * const t = gate.admit("192.0.2.1", 0);
 * if (!(t instanceof Object) || gate.admit("192.0.2.1", 0) !== "source_connections") throw new Error("not limited");
 * t.release();
 * ```
 */
export class AdmissionGate {
  readonly #limits: Required<AdmissionLimits>;
  /** Sources with open connections. */
  readonly #active = new Map<string, Source>();
  /** Sources without open connections, least recently used first. */
  readonly #idle = new Map<string, Source>();
  #open = 0;

  /** @param limits the limits; non-positive rates disable the rate check */
  constructor(limits: AdmissionLimits) {
    this.#limits = { maxIdleSources: DEFAULT_MAX_IDLE_SOURCES, ...limits };
  }

  /** Connections currently admitted. */
  get open(): number {
    return this.#open;
  }

  /** Sources tracked (with open connections, and idle ones kept for their rate history). */
  get trackedSources(): number {
    return this.#active.size + this.#idle.size;
  }

  /** Connections open from the source of `address`. */
  openFrom(address: string): number {
    return this.#active.get(sourceKey(address))?.open ?? 0;
  }

  /**
   * Decides on a new connection from `address` at time `now` (ms).
   * @returns a {@link Ticket} to release when the connection ends, or why it is refused
   */
  admit(address: string, now: number): Ticket | RefusalReason {
    const L = this.#limits;
    const key = sourceKey(address);
    this.#expireIdle(now, 2);
    let s = this.#active.get(key);
    const idle = s === undefined ? this.#idle.get(key) : undefined;
    if (s === undefined) s = idle;
    const open = s?.open ?? 0;
    if (open >= L.maxPerSource) return "source_connections";
    let tokens = L.burst;
    if (s !== undefined) tokens = refill(s, now, L);
    if (L.perSecond > 0 && tokens < 1) {
      if (idle !== undefined) {
        // Keep the rate history fresh in the LRU.
        this.#idle.delete(key);
        this.#idle.set(key, idle);
      }
      return "source_rate";
    }
    const left = L.maxConnections - this.#open;
    if (left <= 0 || (left <= L.reserve && open >= RESERVE_SOURCE_MAX)) return "global";
    if (s === undefined) s = { open: 0, tokens, last: now };
    else if (idle !== undefined) this.#idle.delete(key);
    if (L.perSecond > 0) s.tokens = tokens - 1;
    s.open++;
    this.#active.set(key, s);
    this.#open++;
    return new Ticket(this, key);
  }

  /** @internal a ticket gives back its slot */
  release(key: string): void {
    const s = this.#active.get(key);
    if (s === undefined) return;
    this.#open--;
    if (--s.open > 0) return;
    this.#active.delete(key);
    if (this.#limits.perSecond <= 0 || s.tokens >= this.#limits.burst) return;
    this.#idle.set(key, s);
    while (this.#idle.size > this.#limits.maxIdleSources) {
      this.#idle.delete(this.#idle.keys().next().value!);
    }
  }

  /** Drops up to `max` of the oldest idle sources whose bucket has refilled (they carry no history). */
  #expireIdle(now: number, max: number): void {
    for (const [key, s] of this.#idle) {
      if (max-- <= 0) return;
      if (refill(s, now, this.#limits) < this.#limits.burst) return;
      this.#idle.delete(key);
    }
  }
}

/** Tokens of `s` at `now` (stored back). */
function refill(s: Source, now: number, L: Required<AdmissionLimits>): number {
  if (now > s.last) {
    s.tokens = Math.min(L.burst, s.tokens + ((now - s.last) * L.perSecond) / 1000);
    s.last = now;
  }
  return s.tokens;
}
