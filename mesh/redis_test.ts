/**
 * The Redis mesh backend on a real, throwaway `redis-server` (installed
 * from Debian if missing): the shared mesh cases with two cores in this
 * process, plus what only Redis has: AUTH, the PUBLISH buffer while Redis
 * is down, and recovery after a Redis restart.
 */

import assert from "node:assert/strict";
import { DERP, type InstanceMesh, RelayCore, V2 } from "../relay/mod.ts";
import { RedisMesh } from "./redis.ts";
import { parseRedisUrl } from "../redis/mod.ts";
import { datagramTo, memConnect } from "../tests/support/mem_relay.ts";
import { deliverEventually, eventually, meshCases, type MeshLinks, withTwoCores } from "../tests/support/mesh_cases.ts";
import { RedisServer } from "../tests/support/redis_server.ts";
import { FakeRedis, healthy, maxClientsReached } from "../tests/support/fake_redis.ts";
import { createLogger } from "../log/mod.ts";
import { addMeshMetrics } from "./open.ts";

function twoLinks(server: RedisServer, opts: { maxBufferBytes?: number } = {}): [RedisMesh, RedisMesh] {
  const target = parseRedisUrl(server.url);
  // A fresh prefix per test: subscriptions of one test never see another's traffic.
  const prefix = `t${crypto.randomUUID().slice(0, 8)}`;
  return [
    new RedisMesh({ target, prefix, instanceId: "one", ...opts }),
    new RedisMesh({ target, prefix, instanceId: "two", ...opts }),
  ];
}

/** A factory for links made by the test itself (their server outlives the cores). */
function given(links: [RedisMesh, RedisMesh]): () => Promise<MeshLinks> {
  return () => Promise.resolve({ links, close: () => Promise.resolve() });
}

async function openLinks(): Promise<MeshLinks> {
  const server = await RedisServer.start();
  return { links: twoLinks(server), close: () => server.close() };
}

meshCases("redis", openLinks, { unrouted: (l: InstanceMesh) => (l as RedisMesh).stats.unrouted });

Deno.test("RedisMesh.start() rejects with the address when Redis is unreachable", async () => {
  const server = await RedisServer.start();
  const port = server.port;
  await server.close();
  const mesh = new RedisMesh({ target: parseRedisUrl(`redis://127.0.0.1:${port}`), connectTimeoutMs: 1000 });
  await assert.rejects(
    mesh.start({ datagram() {}, gone() {}, claimed() {} }),
    new RegExp(`Redis at redis://127\\.0\\.0\\.1:${port}: `),
  );
});

Deno.test("RedisMesh authenticates with the URL's password and is refused without it", async () => {
  const server = await RedisServer.start({ password: "s3cret pass" });
  try {
    const bad = new RedisMesh({ target: parseRedisUrl(`redis://:wrong@127.0.0.1:${server.port}`) });
    await assert.rejects(bad.start({ datagram() {}, gone() {}, claimed() {} }), /AUTH refused: WRONGPASS/);
    const links = twoLinks(server);
    await withTwoCores(given(links), async (one, two) => {
      const a = await memConnect(one, V2);
      const b = await memConnect(two, DERP);
      await deliverEventually(a, b, "with password");
    });
  } finally {
    await server.close();
  }
});

Deno.test("RedisMesh recovers after a Redis restart: resubscribes held keys, datagrams cross again", async () => {
  const server = await RedisServer.start();
  const links = twoLinks(server);
  try {
    await withTwoCores(given(links), async (one, two) => {
      const a = await memConnect(one, V2);
      const b = await memConnect(two, V2);
      await deliverEventually(a, b, "before restart");
      await server.restart();
      // Both links notice the restart and come back (backoff starts at 50 ms).
      await eventually(() => links.every((l) => l.stats.reconnects >= 2 && l.up), "both links to reconnect", 10_000);
      await deliverEventually(a, b, "after restart one to two");
      await deliverEventually(b, a, "after restart two to one");
    });
  } finally {
    await server.close();
  }
});

Deno.test("RedisMesh buffers a bounded amount while Redis is down, then drops and counts", async () => {
  const server = await RedisServer.start();
  const links = twoLinks(server, { maxBufferBytes: 16 * 1024 });
  try {
    await withTwoCores(given(links), async (one, two) => {
      const a = await memConnect(one, V2);
      const b = await memConnect(two, V2);
      await deliverEventually(a, b, "warm");
      await server.stop();
      await eventually(() => !links[0].up, "the link to notice Redis is gone");
      // 30 × 1,200 bytes do not fit in 16 KiB: forward() must neither block nor throw.
      for (let i = 0; i < 30; i++) await a.feed(datagramTo(a, b.key, new Uint8Array(1200)));
      assert.ok(links[0].stats.overflow >= 15, `overflow ${links[0].stats.overflow}`);
      assert.equal(one.metrics.c.meshForwarded >= 30, true);
      await server.startAgain();
      await eventually(() => links.every((l) => l.up), "both links to reconnect", 10_000);
      await deliverEventually(a, b, "after outage");
    });
  } finally {
    await server.close();
  }
});

Deno.test("RedisMesh over a Redis that accepts and refuses: bounded reconnects, log lines and redis_reconnects_total", async () => {
  // The first two connections (publish, subscribe) are served; every later one gets Redis's maxclients error.
  const fake = new FakeRedis((n) => n < 2 ? healthy : maxClientsReached);
  const lines: string[] = [];
  const mesh = new RedisMesh({
    target: parseRedisUrl(fake.url),
    log: createLogger({ write: (l) => lines.push(l) }),
    connectTimeoutMs: 1000,
  });
  const core = new RelayCore();
  const metrics = core.metrics;
  addMeshMetrics(metrics, mesh);
  try {
    await mesh.start({ datagram() {}, gone() {}, claimed() {} });
    fake.dropAll();
    await new Promise((r) => setTimeout(r, 3000));
    // Two links, each at most 8 attempts in 3 s (50 ms doubling, jitter 50–100 %); before: ~7,500 a second.
    const n = mesh.reconnectAttempts;
    assert.ok(n >= 6 && n <= 16, `attempts ${n}`);
    assert.ok(lines.length <= n + 2, lines.join("\n"));
    assert.match(metrics.render(), new RegExp(`\\nredis_reconnects_total ${n}\\n`));
  } finally {
    core.close();
    await mesh.close();
    await fake.close();
  }
});
