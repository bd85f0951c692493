/**
 * @module
 * The packet store interface both backends implement (SQLite for one
 * instance, Redis for several), and the one shared suite in
 * `store_cases.ts` runs against each.
 *
 * The store owns newer-wins: {@link PacketStore.upsert} replaces a stored
 * packet only with a newer one (spec §1.2 `more_recent_than`), atomically
 * in the backend, so two instances racing on one key cannot go backwards.
 * Eviction is by the packet's *signed* timestamp (spec §1.6).
 */

import type { SignedPacket } from "./proto/signed_packet.ts";

/** What an upsert did: `stored`, or `stale` (the stored packet is as new or newer; nothing changed). */
export type UpsertResult = "stored" | "stale";

/** Where signed packets live. */
export interface PacketStore {
  /** `sqlite` or `redis`, for `/healthz` and logs. */
  readonly kind: "sqlite" | "redis";
  /** The stored SignedPacket bytes (pubkey | sig | ts | dns) for `key`, or null. */
  get(key: Uint8Array): Promise<Uint8Array | null>;
  /** Stores `p` unless the stored packet is as new or newer; durable once resolved. */
  upsert(p: SignedPacket): Promise<UpsertResult>;
  /** Removes packets whose signed timestamp is below `cutoffUs`; returns how many. */
  evictOlderThan(cutoffUs: bigint): Promise<number>;
  /** Number of stored packets. */
  count(): Promise<number>;
  /** True if the backend answers now (for `/healthz`). */
  healthy(): boolean;
  /** Releases the backend. */
  close(): Promise<void>;
}

/** How often eviction runs (upstream: every 10 s), ms. */
export const EVICTION_INTERVAL_MS = 10_000;
