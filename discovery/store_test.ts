import assert from "node:assert/strict";
import { parseRedisUrl } from "../redis/mod.ts";
import { parseRelayPayload } from "./proto/signed_packet.ts";
import { VECTOR, vectorPayload } from "./proto/testdata.ts";
import { PACKET_VERIFIER } from "./service.ts";
import { silentLogger } from "../log/mod.ts";
import { RedisServer } from "../tests/support/redis_server.ts";
import { STORE_CASES } from "./store_cases.ts";
import { SqliteStore } from "./store_sqlite.ts";
import { RedisStore } from "./store_redis.ts";

for (const c of STORE_CASES) {
  Deno.test(`SqliteStore ${c.name}`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "disc-sqlite-" });
    const store = new SqliteStore(`${dir}/db.sqlite`);
    try {
      await c.fn(store);
    } finally {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("RedisStore", async (t) => {
  const server = await RedisServer.start();
  try {
    let n = 0;
    for (const c of STORE_CASES) {
      await t.step(c.name, async () => {
        // A fresh prefix per case: an empty store on the shared server.
        const store = new RedisStore({ target: parseRedisUrl(server.url), prefix: `case${n++}`, log: silentLogger });
        await store.start();
        try {
          await c.fn(store);
        } finally {
          await store.close();
        }
      });
    }
    await t.step("the database number of redis_url is used (SELECT on connect)", async () => {
      const db3 = new RedisStore({ target: parseRedisUrl(`${server.url}/3`), prefix: "dbcase", log: silentLogger });
      const db0 = new RedisStore({ target: parseRedisUrl(server.url), prefix: "dbcase", log: silentLogger });
      await db3.start();
      await db0.start();
      try {
        const p = await parseRelayPayload(VECTOR.pubkey, vectorPayload(), PACKET_VERIFIER);
        assert.equal(await db3.upsert(p), "stored");
        assert.deepEqual(await db3.get(VECTOR.pubkey), p.bytes);
        assert.equal(await db0.get(VECTOR.pubkey), null);
      } finally {
        await db3.close();
        await db0.close();
      }
    });
  } finally {
    await server.close();
  }
});
