/**
 * @module
 * The one test suite every {@link PacketStore} backend runs
 * (`store_test.ts`): newer-wins, stale writes, eviction by signed time,
 * counting, and racing writers.
 */

import assert from "node:assert/strict";
import { isCurvePoint, verifyStrict } from "../relay/mod.ts";
import { irohTxt, relayPayload, testKey } from "../tests/support/pkarr_packet.ts";
import { parseRelayPayload, type SignedPacket } from "./proto/signed_packet.ts";
import { VECTOR, vectorPayload } from "./proto/testdata.ts";
import type { PacketStore } from "./store.ts";

const verifier = { isValidKey: isCurvePoint, verify: verifyStrict };

async function packet(k: ReturnType<typeof testKey>, ts: bigint, relay: string): Promise<SignedPacket> {
  return await parseRelayPayload(k.pub, relayPayload(k, ts, irohTxt(k, [`relay=${relay}`])), verifier);
}

/** One case: a name and a body run on a fresh, empty store. */
export interface StoreCase {
  name: string;
  fn(store: PacketStore): Promise<void>;
}

/** The shared cases. */
export const STORE_CASES: readonly StoreCase[] = [
  {
    name: "stores the §1.8 vector and returns the same bytes",
    async fn(store) {
      assert.equal(await store.get(VECTOR.pubkey), null);
      const p = await parseRelayPayload(VECTOR.pubkey, vectorPayload(), verifier);
      assert.equal(await store.upsert(p), "stored");
      assert.deepEqual(await store.get(VECTOR.pubkey), p.bytes);
      assert.equal(await store.count(), 1);
    },
  },
  {
    name: "an older or identical packet is stale and changes nothing; a newer one replaces",
    async fn(store) {
      const k = testKey();
      const mid = await packet(k, 2000n, "https://mid/");
      assert.equal(await store.upsert(mid), "stored");
      assert.equal(await store.upsert(await packet(k, 1000n, "https://old/")), "stale");
      assert.equal(await store.upsert(mid), "stale");
      assert.deepEqual(await store.get(k.pub), mid.bytes);
      const next = await packet(k, 3000n, "https://new/");
      assert.equal(await store.upsert(next), "stored");
      assert.deepEqual(await store.get(k.pub), next.bytes);
    },
  },
  {
    name: "on equal timestamps the greater DNS bytes win",
    async fn(store) {
      const k = testKey();
      const a = await packet(k, 5000n, "https://a/");
      const b = await packet(k, 5000n, "https://b/");
      assert.equal(await store.upsert(b), "stored");
      assert.equal(await store.upsert(a), "stale");
      assert.deepEqual(await store.get(k.pub), b.bytes);
      const k2 = testKey();
      assert.equal(await store.upsert(await packet(k2, 5000n, "https://a/")), "stored");
      const b2 = await packet(k2, 5000n, "https://b/");
      assert.equal(await store.upsert(b2), "stored");
      assert.deepEqual(await store.get(k2.pub), b2.bytes);
    },
  },
  {
    name: "eviction removes packets signed before the cutoff, and only those",
    async fn(store) {
      const old = testKey();
      const young = testKey();
      await store.upsert(await packet(old, 1_000_000n, "https://old/"));
      await store.upsert(await packet(young, 9_000_000n, "https://young/"));
      assert.equal(await store.count(), 2);
      assert.equal(await store.evictOlderThan(5_000_000n), 1);
      assert.equal(await store.get(old.pub), null);
      assert.notEqual(await store.get(young.pub), null);
      assert.equal(await store.count(), 1);
      assert.equal(await store.evictOlderThan(5_000_000n), 0);
    },
  },
  {
    name: "racing writers on one key leave the newest packet",
    async fn(store) {
      const k = testKey();
      const packets = await Promise.all(
        Array.from({ length: 40 }, (_, i) => packet(k, BigInt(1000 + i), `https://r${i}/`)),
      );
      const shuffled = packets.map((p, i) => [(i * 17) % 40, p] as const).sort((x, y) => x[0] - y[0]).map((x) => x[1]);
      await Promise.all(shuffled.map((p) => store.upsert(p)));
      assert.deepEqual(await store.get(k.pub), packets[39]!.bytes);
    },
  },
];
