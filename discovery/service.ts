/**
 * @module
 * The discovery core every transport shares: the packet store, a cache of
 * parsed records, the zone settings, the PUT rate limiter, metrics, and the
 * eviction sweep.
 *
 * - Packets older than `eviction_age_secs` (by signed time) are neither
 *   served nor kept: reads check the age, and a sweep every
 *   {@link EVICTION_INTERVAL_MS} deletes them.
 * - Parsed records are cached per key and checked against the stored
 *   packet's signature on every use, so an update (from this or another
 *   instance) is seen at once; the cache is bounded and least-recently-used
 *   entries go first.
 */

import type { Logger } from "../log/mod.ts";
import { isCurvePoint, verifyStrict } from "../relay/mod.ts";
import { DiscoveryMetrics } from "./metrics.ts";
import { type DnsReply, type DnsTransport, respond } from "./proto/responder.ts";
import { packetFromBytes, type PacketVerifier, type SignedPacket } from "./proto/signed_packet.ts";
import { type PacketRecords, packetRecords, type ZoneOptions } from "./proto/zone.ts";
import { EVICTION_INTERVAL_MS, type PacketStore, type UpsertResult } from "./store.ts";
import { PutRateLimiter } from "./rate_limit.ts";

/** Ed25519 checks with the relay's strict verifier (WebCrypto, off the event loop). */
export const PACKET_VERIFIER: PacketVerifier = { isValidKey: isCurvePoint, verify: verifyStrict };

/** Parsed-record cache entries. */
const RECORD_CACHE_SIZE = 65_536;

/** Options of {@link DiscoveryService}. */
export interface DiscoveryServiceOptions {
  /** Where packets live. */
  store: PacketStore;
  /** Zone names and NS names. */
  zone: ZoneOptions;
  /** `pkarr_put_rate_limit`. */
  rateLimit: "disabled" | "simple" | "smart";
  /** `eviction_age_secs`. */
  evictionAgeSecs: number;
  /** Logger. */
  log?: Logger;
  /** Clock, ms since the epoch (tests). */
  now?: () => number;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** See the module doc. */
export class DiscoveryService {
  /** Counters and gauges. */
  readonly metrics = new DiscoveryMetrics();
  /** The store. */
  readonly store: PacketStore;
  /** Zone settings. */
  readonly zone: ZoneOptions;
  /** Rate-limit mode. */
  readonly rateLimitMode: "disabled" | "simple" | "smart";
  /** The limiter (unused when disabled). */
  readonly limiter = new PutRateLimiter();
  readonly #ageUs: bigint;
  readonly #log: Logger | undefined;
  readonly #now: () => number;
  readonly #records = new Map<string, { sig: Uint8Array; records: PacketRecords }>();
  #sweep: ReturnType<typeof setInterval> | undefined;
  #sweeping: Promise<void> = Promise.resolve();

  /** @param o see {@link DiscoveryServiceOptions} */
  constructor(o: DiscoveryServiceOptions) {
    this.store = o.store;
    this.zone = o.zone;
    this.rateLimitMode = o.rateLimit;
    this.#ageUs = BigInt(o.evictionAgeSecs) * 1_000_000n;
    this.#log = o.log;
    this.#now = o.now ?? Date.now;
  }

  /** Current time, ms. */
  now(): number {
    return this.#now();
  }

  /** Signed timestamps below this are expired, µs. */
  cutoffUs(): bigint {
    return BigInt(Math.floor(this.#now())) * 1000n - this.#ageUs;
  }

  /** Starts the eviction sweep (runs once at once, then every 10 s). */
  startSweep(): void {
    const run = () => {
      this.#sweeping = this.sweep().catch((e) => this.#log?.warn(`eviction sweep failed: ${(e as Error).message}`));
    };
    run();
    this.#sweep = setInterval(run, EVICTION_INTERVAL_MS);
  }

  /** One eviction pass; refreshes the store-size gauge. */
  async sweep(): Promise<void> {
    const n = await this.store.evictOlderThan(this.cutoffUs());
    if (n > 0) this.#log?.debug(`evicted ${n} expired packets`);
    this.metrics.storePackets = await this.store.count();
  }

  /** The stored, unexpired packet of `key`, or null. Throws on a store error. */
  async getPacket(key: Uint8Array): Promise<SignedPacket | null> {
    const bytes = await this.store.get(key);
    if (bytes === null) return null;
    const p = packetFromBytes(bytes);
    return p.ts < this.cutoffUs() ? null : p;
  }

  /** Stores a verified packet (newer-wins in the store). */
  async putPacket(p: SignedPacket): Promise<UpsertResult> {
    return await this.store.upsert(p);
  }

  /** The record lookup the zone logic uses. */
  readonly lookup = async (key: Uint8Array, z32: string): Promise<PacketRecords | null> => {
    const p = await this.getPacket(key);
    if (p === null) return null;
    const hit = this.#records.get(z32);
    if (hit && sameBytes(hit.sig, p.sig)) {
      this.#records.delete(z32);
      this.#records.set(z32, hit);
      return hit.records;
    }
    const records = packetRecords(p.dns, z32);
    this.#records.delete(z32);
    this.#records.set(z32, { sig: p.sig.slice(), records });
    if (this.#records.size > RECORD_CACHE_SIZE) this.#records.delete(this.#records.keys().next().value!);
    return records;
  };

  /** Answers one DNS message and counts it. */
  async dns(query: Uint8Array, transport: DnsTransport, protocol: "udp" | "tcp" | "https"): Promise<DnsReply | null> {
    const reply = await respond(query, transport, this.zone, this.lookup);
    if (reply) this.metrics.dnsRequests.inc({ protocol, rcode: reply.rcode });
    return reply;
  }

  /** Stops the sweep and closes the store. */
  async close(): Promise<void> {
    clearInterval(this.#sweep);
    await this.#sweeping;
    await this.store.close();
  }
}
