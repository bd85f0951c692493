/**
 * @module
 * One test suite every {@link MailboxStore} runs (`store_sqlite_test.ts`,
 * `store_redis_test.ts`): ports of Dendrite's storage table tests
 * (`relayapi/storage/tables/relay_queue{,_json}_table_test.go @v0.13.8`)
 * with real assertions, and our rules: de-duplication, quotas, scoped
 * acknowledgements, expiry, ids never reused, durability across reopen.
 */

import assert from "node:assert/strict";
import type { Deposit, DepositLimits, MailboxStore } from "./store.ts";

/** What a backend provides to the suite. */
export interface StoreHarness {
  /** A fresh, empty store. */
  store: MailboxStore;
  /** Closes it and opens the same data again (a restart). */
  reopen(): Promise<MailboxStore>;
  /** Removes everything the harness made. */
  cleanup(): Promise<void>;
}

const NOW = 1_800_000_000_000;
const DAY = 24 * 3600 * 1000;
const WIDE: DepositLimits = { maxEntries: 1000, maxBytes: 1 << 24, maxTotalBytes: 1 << 26 };
const A = "a".repeat(64);
const B = "b".repeat(64);
const S = "5".repeat(64);

function dep(over: Partial<Deposit> = {}): Deposit {
  const body = over.body ?? `{"origin":"${over.origin ?? S}","origin_server_ts":0,"pdus":[]}`;
  return {
    recipient: A,
    origin: S,
    txnId: crypto.randomUUID(),
    body,
    bytes: new TextEncoder().encode(body).length,
    now: NOW,
    expiresAt: NOW + 7 * DAY,
    ...over,
  };
}

async function stored(s: MailboxStore, d: Deposit, l = WIDE): Promise<number> {
  const r = await s.deposit(d, l);
  assert.equal(r.status, "stored");
  return (r as { id: number }).id;
}

/** Registers the suite for one backend. */
export function storeCases(name: string, open: () => Promise<StoreHarness>): void {
  const t = (title: string, fn: (h: StoreHarness) => Promise<void>) =>
    Deno.test(`${name}: ${title}`, async () => {
      const h = await open();
      try {
        await fn(h);
      } finally {
        await h.store.close().catch(() => {});
        await h.cleanup();
      }
    });

  // relay_queue_json_table_test.go
  t("TestShoudInsertTransaction: a deposit returns a positive id", async ({ store }) => {
    const id = await stored(store, dep());
    assert.ok(Number.isSafeInteger(id) && id > 0);
  });
  t("TestShouldRetrieveInsertedTransaction: the JSON round-trips byte for byte", async ({ store }) => {
    const body = '{"origin":"x","origin_server_ts":0,"pdus":[{"é":"日本語 \\u0001"}]}';
    const id = await stored(store, dep({ body, bytes: new TextEncoder().encode(body).length }));
    const r = await store.next(A, 0, NOW);
    assert.deepEqual(r.entry, { id, origin: S, body });
  });
  t("TestShouldDeleteTransaction: an acknowledged entry is gone", async ({ store }) => {
    const id = await stored(store, dep());
    const r = await store.next(A, id, NOW);
    assert.equal(r.acked, true);
    assert.equal(r.entry, null);
    assert.equal((await store.next(A, id, NOW)).acked, false, "acknowledging twice deletes nothing more");
  });

  // relay_queue_table_test.go
  t(
    "TestShoudInsertQueueTransaction / TestShouldRetrieveInsertedQueueTransaction: next() returns the id",
    async ({ store }) => {
      const id = await stored(store, dep());
      assert.equal((await store.next(A, 0, NOW)).entry?.id, id);
      assert.equal((await store.next(B, 0, NOW)).entry, null, "another recipient sees nothing");
    },
  );
  t("TestShouldRetrieveOldestInsertedQueueTransaction: FIFO by id, one at a time", async ({ store }) => {
    const ids = [];
    for (let k = 0; k < 3; k++) ids.push(await stored(store, dep({ txnId: `t${k}` })));
    assert.deepEqual([...ids].sort((x, y) => x - y), ids, "ids increase");
    const seen = [];
    let ack = 0;
    for (;;) {
      const r = await store.next(A, ack, NOW);
      if (r.entry === null) break;
      seen.push(r.entry.id);
      ack = r.entry.id;
    }
    assert.deepEqual(seen, ids);
  });
  t("TestShouldDeleteQueueTransaction: the count becomes 0", async ({ store }) => {
    const id = await stored(store, dep());
    assert.deepEqual(await store.stats(), { entries: 1, bytes: dep().bytes });
    await store.next(A, id, NOW);
    assert.deepEqual(await store.stats(), { entries: 0, bytes: 0 });
  });
  t(
    "TestShouldDeleteOnlySpecifiedQueueTransaction + §2.7: an ack only deletes the caller's own entry",
    async ({ store }) => {
      const victim = await stored(store, dep({ recipient: B, txnId: "v" }));
      const mine = await stored(store, dep({ recipient: A, txnId: "m" }));
      // The attacker (A) acknowledges the victim's id in its own mailbox.
      const r = await store.next(A, victim, NOW);
      assert.equal(r.acked, false);
      assert.equal(r.entry?.id, mine, "its own entry is untouched");
      const v = await store.next(B, 0, NOW);
      assert.equal(v.entry?.id, victim, "the victim still gets its entry");
      assert.equal((await store.stats()).entries, 2);
    },
  );

  // Our rules.
  t("de-duplication on (origin, txnID, recipient), even after delivery", async ({ store }) => {
    const id = await stored(store, dep({ txnId: "same" }));
    assert.deepEqual(await store.deposit(dep({ txnId: "same" }), WIDE), { status: "duplicate", id });
    await stored(store, dep({ txnId: "same", recipient: B })); // other recipient
    await stored(store, dep({ txnId: "same", origin: "6".repeat(64) })); // other origin
    await store.next(A, id, NOW);
    assert.deepEqual(await store.deposit(dep({ txnId: "same" }), WIDE), { status: "duplicate", id });
    assert.equal((await store.next(A, 0, NOW)).entry?.origin, "6".repeat(64), "the duplicate was not stored again");
  });
  t(
    "quotas: entries and bytes per recipient, total bytes; a full mailbox frees up when collected",
    async ({ store }) => {
      const l: DepositLimits = { maxEntries: 2, maxBytes: 1000, maxTotalBytes: 1500 };
      const first = await stored(store, dep(), l);
      await stored(store, dep(), l);
      assert.deepEqual(await store.deposit(dep(), l), { status: "full", quota: "entries" });
      await stored(store, dep({ recipient: B }), l);
      const big = "x".repeat(900);
      assert.deepEqual(await store.deposit(dep({ recipient: B, body: big, bytes: 900 }), l), {
        status: "full",
        quota: "bytes",
      });
      const C = "c".repeat(64);
      await stored(store, dep({ recipient: C, body: big, bytes: 900 }), l);
      assert.deepEqual(await store.deposit(dep({ recipient: "d".repeat(64), body: big, bytes: 900 }), l), {
        status: "full",
        quota: "total",
      });
      await store.next(A, first, NOW);
      await stored(store, dep(), l);
    },
  );
  t("expiry: an expired entry is never returned; expire() removes it; the seen record goes too", async ({ store }) => {
    const old = await stored(store, dep({ txnId: "old", expiresAt: NOW + 1000 }));
    const young = await stored(store, dep({ txnId: "young", expiresAt: NOW + DAY }));
    const r = await store.next(A, 0, NOW + 2000);
    assert.equal(r.entry?.id, young);
    assert.equal(r.expired, 1);
    assert.notEqual(r.entry?.id, old);
    await stored(store, dep({ recipient: B, txnId: "b", expiresAt: NOW + 1000 }));
    assert.equal(await store.expire(NOW + 2000, 100), 1);
    assert.equal((await store.next(B, 0, NOW)).entry, null);
    assert.deepEqual(await store.stats(), { entries: 1, bytes: dep().bytes });
    // After its expiry the same txnID is a new deposit.
    await stored(store, dep({ txnId: "old", now: NOW + 2000, expiresAt: NOW + DAY }));
  });
  t("ids are never reused: a stale ack cannot delete a newer entry", async ({ store }) => {
    const first = await stored(store, dep());
    await store.next(A, first, NOW);
    const second = await stored(store, dep());
    assert.ok(second > first);
    assert.equal((await store.next(A, first, NOW)).entry?.id, second);
  });
  t("durability: entries, counters and seen records survive a reopen", async (h) => {
    const id = await stored(h.store, dep({ txnId: "keep" }));
    const s2 = await h.reopen();
    h.store = s2;
    assert.equal((await s2.next(A, 0, NOW)).entry?.id, id);
    assert.deepEqual(await s2.stats(), { entries: 1, bytes: dep().bytes });
    assert.equal((await s2.deposit(dep({ txnId: "keep" }), WIDE)).status, "duplicate");
    const next = await stored(s2, dep());
    assert.ok(next > id);
  });
}
