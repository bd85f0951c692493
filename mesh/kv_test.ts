/**
 * The Deno KV mesh backend on a local SQLite KV file, in one process: two
 * cores, each with its own `Deno.openKv` handle on the same file (as two
 * isolates share one database). Within one process `watch` sees the other
 * handle's writes, so these cases run on wake-ups alone (no polling); the
 * cross-process case (polling) is in `tests/mesh_process_test.ts`.
 */

import assert from "node:assert/strict";
import { type InstanceMesh, V2 } from "../relay/mod.ts";
import { KvMesh } from "./kv.ts";
import { datagramsOf, datagramTo, memConnect } from "../tests/support/mem_relay.ts";
import { deliverEventually, eventually, meshCases, type MeshLinks, withTwoCores } from "../tests/support/mesh_cases.ts";

async function openLinks(
  opts: { pollMs?: number; wallClock?: () => number; holderRefreshMs?: number } = {},
): Promise<MeshLinks & { kvs: Deno.Kv[] }> {
  const dir = await Deno.makeTempDir({ prefix: "relay-kv-" });
  const path = `${dir}/mesh.sqlite`;
  const kvs = [await Deno.openKv(path), await Deno.openKv(path)];
  const common = {
    prefix: "t",
    pollMs: opts.pollMs ?? 0,
    ...(opts.wallClock ? { wallClock: opts.wallClock } : {}),
    ...(opts.holderRefreshMs ? { holderRefreshMs: opts.holderRefreshMs } : {}),
  };
  return {
    kvs,
    links: [
      new KvMesh({ kv: kvs[0]!, instanceId: "one", ...common }),
      new KvMesh({ kv: kvs[1]!, instanceId: "two", ...common }),
    ],
    async close() {
      for (const kv of kvs) kv.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

meshCases("kv (watch)", () => openLinks(), { unrouted: (l: InstanceMesh) => (l as KvMesh).stats.unrouted });

Deno.test("kv mesh: wake-ups by polling alone deliver too (what a local file shared by processes relies on)", async () => {
  await withTwoCores(() => openLinks({ pollMs: 10 }), async (one, two) => {
    const a = await memConnect(one, V2);
    const b = await memConnect(two, V2);
    await deliverEventually(a, b, "polled one to two");
    await deliverEventually(b, a, "polled two to one");
  });
});

Deno.test("kv mesh: a 64 KiB datagram batch crosses in several inbox parts; a burst keeps its order", async () => {
  await withTwoCores(() => openLinks(), async (one, two, links) => {
    const a = await memConnect(one, V2);
    const b = await memConnect(two, V2);
    await deliverEventually(a, b, "warm");
    const big = new Uint8Array(65_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const before = datagramsOf(b).length;
    // Over 60 KB of messages: one batch of two parts, written in one commit.
    await a.feed({ type: "ClientToRelayDatagramBatch", dstKey: b.key, ecn: 1, segmentSize: 1300, contents: big });
    for (let i = 0; i < 50; i++) await a.feed(datagramTo(a, b.key, Uint8Array.of(i)));
    await b.out.until(() => datagramsOf(b).length >= before + 51, "the big datagram and the burst", 8000);
    const got = datagramsOf(b).slice(before);
    assert.deepEqual(got[0]!.data, big);
    assert.deepEqual(got.slice(1).map((d) => d.data[0]), Array.from({ length: 50 }, (_, i) => i));
    const batch = b.out.sent.find((m) => m.type === "RelayToClientDatagramBatch");
    assert.equal((batch as { segmentSize: number }).segmentSize, 1300);
    assert.equal((links[1] as KvMesh).stats.malformed, 0);
  });
});

Deno.test("kv mesh: keys of an instance that stopped heartbeating count as connected nowhere", async () => {
  let skew = 0;
  await withTwoCores(() => openLinks({ wallClock: () => Date.now() + skew }), async (one, two, links) => {
    const a = await memConnect(one, V2);
    const b = await memConnect(two, V2);
    await deliverEventually(a, b, "alive");
    // Instance one's clock jumps 60 s ahead: two's last heartbeat (good for 20 s) is now stale.
    skew = 60_000;
    const m = links[0] as KvMesh;
    await eventually(
      () => {
        a.feed(datagramTo(a, b.key, new Uint8Array(1)));
        return m.stats.unrouted >= 1;
      },
      "a datagram to be refused for a dead holder",
      8000,
    );
  });
});

Deno.test("kv mesh: close() removes this instance's holder and alive entries", async () => {
  const opened = await openLinks();
  const [one] = opened.links;
  const core = await import("../tests/support/mem_relay.ts").then((m) => m.memCore(new m.FakeClock(), { mesh: one }));
  try {
    await core.startMesh();
    const a = await memConnect(core, V2);
    const kv = opened.kvs[1]!;
    let holder: { id?: string } | null = null;
    for (let i = 0; i < 100 && holder === null; i++) {
      holder = (await kv.get<{ id: string }>(["t", "holder", a.key])).value;
      if (holder === null) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(holder?.id, "one");
    core.close();
    await one.close();
    assert.equal((await kv.get(["t", "holder", a.key])).value, null);
    assert.equal((await kv.get(["t", "alive", "one"])).value, null);
  } finally {
    core.close();
    await opened.links[0].close();
    await opened.links[1].close();
    await opened.close();
  }
});

Deno.test("kv mesh: held keys' directory entries are refreshed, stay routable, and are removed on release", async () => {
  const opened = await openLinks({ holderRefreshMs: 30 });
  await withTwoCores(() => Promise.resolve(opened), async (one, two) => {
    const kv = opened.kvs[0]!;
    const a = await memConnect(one, V2);
    const b = await memConnect(two, V2);
    await deliverEventually(a, b, "first");
    const first = await kv.get(["t", "holder", b.key]);
    let refreshed = first;
    for (let i = 0; i < 200 && refreshed.versionstamp === first.versionstamp; i++) {
      await new Promise((r) => setTimeout(r, 10));
      refreshed = await kv.get(["t", "holder", b.key]);
    }
    assert.notEqual(refreshed.versionstamp, first.versionstamp, "the entry was rewritten by the refresh");
    assert.equal((refreshed.value as { id: string }).id, "two");
    await deliverEventually(a, b, "after refresh");
    b.client.close("test: leaves");
    let gone = false;
    for (let i = 0; i < 200 && !gone; i++) {
      gone = (await kv.get(["t", "holder", b.key])).value === null;
      if (!gone) await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(gone, "released key's entry deleted although refreshes changed its versionstamp");
  });
});
