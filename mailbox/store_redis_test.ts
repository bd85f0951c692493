import assert from "node:assert/strict";
import { storeCases } from "./_store_cases.ts";
import { RedisMailboxStore } from "./store_redis.ts";
import { parseRedisUrl, silentLogger } from "./_deps.ts";
import { RedisServer } from "../tests/support/redis_server.ts";

storeCases("RedisMailboxStore", async () => {
  const server = await RedisServer.start();
  const target = parseRedisUrl(server.url);
  const h = {
    store: await RedisMailboxStore.open(target, { log: silentLogger }),
    async reopen() {
      await h.store.close();
      h.store = await RedisMailboxStore.open(target, { log: silentLogger });
      return h.store;
    },
    cleanup: () => server.close(),
  };
  return h;
});

const DEP = {
  recipient: "a".repeat(64),
  origin: "b".repeat(64),
  body: "{}",
  bytes: 2,
  now: 0,
  expiresAt: 1e15,
};
const LIMITS = { maxEntries: 10, maxBytes: 1000, maxTotalBytes: 1000 };

Deno.test("RedisMailboxStore: TestCreateRelayInternalInvalidDatabasePanics: an unreachable Redis is a clear error", async () => {
  const server = await RedisServer.start();
  const port = server.port;
  await server.close();
  await assert.rejects(
    RedisMailboxStore.open(parseRedisUrl(`redis://127.0.0.1:${port}`), { log: silentLogger }),
    new RegExp(`Redis at redis://127.0.0.1:${port}`),
  );
});

Deno.test("RedisMailboxStore: prefixes and database numbers keep two mailboxes apart; the password is used", async () => {
  const server = await RedisServer.start({ password: "pw" });
  try {
    const url = server.url;
    const one = await RedisMailboxStore.open(parseRedisUrl(url), { log: silentLogger, prefix: "one" });
    const two = await RedisMailboxStore.open(parseRedisUrl(url), { log: silentLogger, prefix: "two" });
    const db3 = await RedisMailboxStore.open(parseRedisUrl(`${url}/3`), { log: silentLogger, prefix: "one" });
    try {
      assert.equal((await one.deposit({ ...DEP, txnId: "t" }, LIMITS)).status, "stored");
      assert.equal((await two.next(DEP.recipient, 0, 1)).entry, null);
      assert.equal((await db3.next(DEP.recipient, 0, 1)).entry, null);
      assert.notEqual((await one.next(DEP.recipient, 0, 1)).entry, null);
    } finally {
      await Promise.all([one.close(), two.close(), db3.close()]);
    }
    await assert.rejects(
      RedisMailboxStore.open(parseRedisUrl(`redis://127.0.0.1:${server.port}`), { log: silentLogger }),
      /NOAUTH|Authentication|auth/i,
    );
  } finally {
    await server.close();
  }
});

Deno.test("RedisMailboxStore: a Redis restart fails the commands in flight, then the store works again", async () => {
  const server = await RedisServer.start();
  try {
    const store = await RedisMailboxStore.open(parseRedisUrl(server.url), { log: silentLogger });
    try {
      assert.equal((await store.deposit({ ...DEP, txnId: "1" }, LIMITS)).status, "stored");
      await server.stop();
      // Lost in flight, or refused at once while reconnecting: never a hang.
      await assert.rejects(store.deposit({ ...DEP, txnId: "2" }, LIMITS), /Redis/);
      await assert.rejects(store.deposit({ ...DEP, txnId: "2" }, LIMITS), /Redis is unreachable/);
      await server.startAgain();
      // The client reconnects with backoff; the first command after that succeeds.
      let ok = false;
      for (let k = 0; k < 100 && !ok; k++) {
        try {
          ok = (await store.deposit({ ...DEP, txnId: "3" }, LIMITS)).status === "stored";
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      assert.ok(ok, "a deposit succeeds after the restart");
    } finally {
      await store.close();
    }
  } finally {
    await server.close();
  }
});
