/**
 * {@link RedisConn} against servers that accept and then misbehave (a fake
 * on loopback) and a real `redis-server` at `maxclients`: the reconnect
 * rate, the log lines and the memory stay bounded.
 */

import assert from "node:assert/strict";
import { createLogger } from "../log/mod.ts";
import { encodeCommand, parseRedisUrl, RedisConn, type RedisConnOptions } from "./mod.ts";
import {
  acceptThenDrop,
  type FakeBehaviour,
  FakeRedis,
  healthy,
  maxClientsReached,
  oversizeArray,
  oversizeArrayOfSmall,
  replyCutOff,
  writeAll,
} from "../tests/support/fake_redis.ts";
import { RedisServer } from "../tests/support/redis_server.ts";

function conn(url: string, lines: string[], opts: Partial<RedisConnOptions> = {}) {
  const downs: number[] = [];
  const c = new RedisConn({
    target: parseRedisUrl(url),
    name: "test redis",
    log: createLogger({ level: "debug", write: (l) => lines.push(l) }),
    maxBufferBytes: 64 * 1024,
    connectTimeoutMs: 1000,
    onReply() {},
    onUp() {},
    onDown: () => downs.push(performance.now()),
    onIdle() {},
    ...opts,
  });
  return { c, downs };
}

/** Resolves after `ms`: these tests measure what happens over a stretch of wall-clock time. */
function during(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * With the default backoff (50 ms doubling to 5 s, jitter 50–100 %), the
 * waits before attempt k add up to at least 25·(2^k − 1) ms: at most 8
 * attempts fit in 3 s. Without backoff it was tens of thousands.
 */
const MAX_ATTEMPTS_IN_3S = 8;

/** Each connection answers the handshake, then drops after 100 ms: TCP connects and PINGs succeed. */
const upThenDrop: FakeBehaviour = async (c, f) => {
  const t = setTimeout(() => f.dropAll(), 100);
  try {
    await healthy(c, f);
  } finally {
    clearTimeout(t);
  }
};

Deno.test("RedisConn backs off when the server accepts then fails: reconnects and log lines bounded over 3 s", async (t) => {
  // All cases run side by side over the same 3 s (the bound is about wall-clock time).
  const cases: { name: string; behaviour: FakeBehaviour; connects: boolean; want: RegExp }[] = [
    { name: "accepts and drops", behaviour: acceptThenDrop, connects: false, want: /connection closed during PING/ },
    {
      name: "answers -ERR max number of clients reached",
      behaviour: maxClientsReached,
      connects: false,
      want: /PING refused: ERR max number of clients reached/,
    },
    { name: "cuts a reply off", behaviour: replyCutOff, connects: true, want: /link lost after \d+ ms: closed/ },
    { name: "drops 100 ms after the handshake", behaviour: upThenDrop, connects: true, want: /link lost after \d+ ms/ },
  ];
  const runs = await Promise.all(cases.map(async (k) => {
    const fake = new FakeRedis((n) => n === 0 ? healthy : k.behaviour);
    const lines: string[] = [];
    const { c } = conn(fake.url, lines);
    await c.start();
    fake.dropAll();
    return { k, fake, lines, c };
  }));
  try {
    await during(3000);
    for (const { k, lines, c } of runs) {
      await t.step(k.name, () => {
        assert.ok(c.reconnectAttempts >= 3, `attempts ${c.reconnectAttempts}`);
        assert.ok(c.reconnectAttempts <= MAX_ATTEMPTS_IN_3S, `attempts ${c.reconnectAttempts}`);
        if (k.connects) assert.ok(c.reconnects >= 3, "each attempt did connect, and still backed off");
        else assert.equal(c.reconnects, 0, "no attempt counts as a reconnection");
        // One line per backoff step (two when the attempt connected: "reconnected", then "lost").
        assert.ok(lines.length <= (k.connects ? 2 : 1) * c.reconnectAttempts + 1, lines.join("\n"));
        assert.match(lines.join("\n"), /retrying in about \d+ ms/);
        assert.match(lines.join("\n"), k.want);
      });
    }
  } finally {
    for (const { c, fake } of runs) {
      await c.close();
      await fake.close();
    }
  }
});

Deno.test("RedisConn: after a healthy period the backoff resets and the recovery is logged", async () => {
  let phase: "failing" | "ok" = "failing";
  const fake = new FakeRedis((n) => n === 0 || phase === "ok" ? healthy : maxClientsReached);
  const lines: string[] = [];
  const { c, downs } = conn(fake.url, lines, { healthyMs: 300, idleMs: 100 });
  try {
    await c.start();
    fake.dropAll();
    await fake.accepts(4);
    phase = "ok";
    const recovered = lines.length;
    // Up again, then healthy after 300 ms: the check runs every 100 ms.
    while (!lines.slice(recovered).some((l) => /healthy again after \d+ failed attempts/.test(l))) await during(50);
    // A healthy link that drops is reconnected at once, not after the grown backoff.
    const before = c.reconnects;
    const lostAt = performance.now();
    fake.dropAll();
    while (c.reconnects === before) await during(10);
    assert.ok(performance.now() - lostAt < 200, `reconnected after ${performance.now() - lostAt} ms`);
    assert.ok(downs.length >= 2);
  } finally {
    await c.close();
    await fake.close();
  }
});

for (
  const [name, behaviour, want] of [
    ["one 8 MB element of a 60-element array", oversizeArray, /bulk string of 8388608 bytes, over 1048576/],
    ["1,000 elements of 256 KiB", oversizeArrayOfSmall, /reply larger than 1048576 bytes/],
  ] as [string, FakeBehaviour, RegExp][]
) {
  Deno.test(`RedisConn drops a link whose reply is over the cap (${name}); memory stays bounded`, async () => {
    const fake = new FakeRedis((n) => n === 0 ? healthy : behaviour);
    const lines: string[] = [];
    const { c } = conn(fake.url, lines);
    try {
      await c.start();
      const rss0 = Deno.memoryUsage().rss;
      fake.dropAll();
      await fake.accepts(4);
      await during(500);
      const grown = Deno.memoryUsage().rss - rss0;
      assert.match(lines.join("\n"), want);
      // The 480 MB reply is never held: growth is at most a few reply caps (plus the fake's own 1 MiB chunk).
      assert.ok(grown < 64 * 1024 * 1024, `RSS grew ${Math.round(grown / 1e6)} MB`);
    } finally {
      await c.close();
      await fake.close();
    }
  });
}

Deno.test("RedisConn against a real redis-server at maxclients: bounded reconnects over 10 s, then recovery", async () => {
  const server = await RedisServer.start();
  const admin = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const ask = async (args: string[]) => {
    await writeAll(admin, encodeCommand(args));
    const buf = new Uint8Array(4096);
    return new TextDecoder().decode(buf.subarray(0, (await admin.read(buf)) ?? 0));
  };
  const lines: string[] = [];
  const { c } = conn(server.url, lines, { connectTimeoutMs: 3000 });
  try {
    await c.start();
    // Only the admin connection fits from now on; then our link is thrown out.
    assert.match(await ask(["CONFIG", "SET", "maxclients", "1"]), /OK/);
    assert.match(await ask(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]), /:1/);
    await during(10_000);
    // 50 ms doubling to 5 s with jitter: at most 10 attempts fit in 10 s (waits ≥ 25, 50, … 1600, 2500, 2500 ms).
    assert.ok(c.reconnectAttempts >= 5 && c.reconnectAttempts <= 11, `attempts ${c.reconnectAttempts}`);
    assert.ok(lines.length <= 12, `${lines.length} log lines:\n${lines.join("\n")}`);
    assert.match(lines.join("\n"), /PING refused: ERR max number of clients reached/);
    assert.match(await ask(["CONFIG", "SET", "maxclients", "100"]), /OK/);
    const t0 = performance.now();
    while (!c.up) {
      assert.ok(performance.now() - t0 < 8000, "link back within the longest backoff");
      await during(50);
    }
  } finally {
    admin.close();
    await c.close();
    await server.close();
  }
});

Deno.test("RedisConn: at the longest backoff, failures are summarised once a minute instead of a line each", async () => {
  const fake = new FakeRedis((n) => n === 0 ? healthy : maxClientsReached);
  const lines: string[] = [];
  // A short backoff (5 ms doubling to 20 ms) and a clock running 100 times fast: a "minute" passes in 0.6 s.
  const t0 = performance.now();
  const { c } = conn(fake.url, lines, {
    backoffMinMs: 5,
    backoffMaxMs: 20,
    now: () => t0 + (performance.now() - t0) * 100,
  });
  try {
    await c.start();
    fake.dropAll();
    await during(1500);
    const summaries = lines.filter((l) => /still failing: \d+ more failed attempts in the last \d+ s/.test(l));
    assert.ok(c.reconnectAttempts >= 30, `attempts ${c.reconnectAttempts}`);
    assert.ok(summaries.length >= 1 && summaries.length <= 3, summaries.join("\n"));
    // Three backoff steps (5, 10, 20 ms), then only summaries.
    assert.ok(lines.length <= 3 + summaries.length + 1, lines.join("\n"));
  } finally {
    await c.close();
    await fake.close();
  }
});
