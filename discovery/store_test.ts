import { parseRedisUrl } from "../redis/mod.ts";
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
  } finally {
    await server.close();
  }
});
