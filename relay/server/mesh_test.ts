import assert from "node:assert/strict";
import { utf8 } from "../../tests/support/bytes.ts";
import {
  datagramsOf,
  datagramTo,
  FakeClock,
  type MemConn,
  memConnect,
  memCore,
} from "../../tests/support/mem_relay.ts";
import { DERP, type Generation, V2 } from "../proto/generation.ts";
import { InProcessMeshHub } from "./mesh.ts";
import type { RelayCore } from "./relay_core.ts";

/** Two cores joined by an in-process mesh, as two instances behind one relay URL. */
async function withTwoInstances(fn: (a: RelayCore, b: RelayCore) => Promise<void>): Promise<void> {
  const hub = new InProcessMeshHub();
  const clock = new FakeClock();
  const one = memCore(clock, { mesh: hub.link() });
  const two = memCore(clock, { mesh: hub.link() });
  await one.startMesh();
  await two.startMesh();
  try {
    await fn(one, two);
  } finally {
    one.close();
    two.close();
  }
}

async function deliver(from: MemConn, to: MemConn, text: string): Promise<void> {
  const before = datagramsOf(to).length;
  await from.feed(datagramTo(from, to.key, utf8(text)));
  await to.out.until(() => datagramsOf(to).length > before, `datagram "${text}"`);
  const got = datagramsOf(to).at(-1)!;
  assert.deepEqual(got.src, from.key);
  assert.equal(new TextDecoder().decode(got.data), text);
}

for (const [name, gen] of [["0.35", DERP], ["1.x", V2]] as [string, Generation][]) {
  Deno.test(`mesh: ${name} clients on two instances exchange datagrams both ways`, async () => {
    await withTwoInstances(async (one, two) => {
      const a = await memConnect(one, gen);
      const b = await memConnect(two, gen);
      await deliver(a, b, "one to two");
      await deliver(b, a, "two to one");
      assert.equal(one.metrics.c.meshForwarded, 1);
      assert.equal(two.metrics.c.meshReceived, 1);
      assert.equal(two.metrics.c.meshForwarded, 1);
      assert.equal(one.metrics.c.meshReceived, 1);
    });
  });

  Deno.test(`mesh: EndpointGone reaches a ${name} peer on the other instance when the sender leaves`, async () => {
    await withTwoInstances(async (one, two) => {
      const a = await memConnect(one, gen);
      const b = await memConnect(two, gen);
      await deliver(a, b, "hello");
      a.client.close("test: a leaves");
      const goneType = gen === DERP ? "PeerGone" : "EndpointGone";
      const gone = await b.out.nth(goneType);
      assert.deepEqual((gone as { key: Uint8Array }).key, a.key);
    });
  });
}

Deno.test("mesh: a key that reconnects on another instance is closed on the first; datagrams follow it", async () => {
  await withTwoInstances(async (one, two) => {
    const a = await memConnect(one, V2);
    const bOld = await memConnect(one, V2);
    const bNew = await memConnect(two, V2, bOld.secret);
    await bOld.out.until(() => bOld.out.closed, "the older connection to close");
    // `a` and the old b were on one instance; b's key now lives on two.
    await deliver(a, bNew, "follow the key");
  });
});

Deno.test("regression: a key moving to another instance does not send EndpointGone to its peers", async () => {
  await withTwoInstances(async (one, two) => {
    const a = await memConnect(one, V2);
    const bOld = await memConnect(one, V2);
    await deliver(bOld, a, "b talks to a"); // a is in b's sent_to
    const bNew = await memConnect(two, V2, bOld.secret);
    await bOld.out.until(() => bOld.out.closed, "the older connection to close");
    await deliver(bNew, a, "b still here");
    assert.equal(a.out.ofType("EndpointGone").length, 0, "b never left");
  });
});

Deno.test("mesh: a datagram for a key connected nowhere is dropped on the receiving side and counted", async () => {
  await withTwoInstances(async (one, two) => {
    const a = await memConnect(one, V2);
    const ghost = await memConnect(two, V2);
    ghost.client.close("test: leaves");
    await a.feed(datagramTo(a, ghost.key, utf8("late")));
    assert.equal(one.metrics.c.meshForwarded + one.metrics.c.sendPacketsDropped, 1);
    assert.equal(two.metrics.c.meshReceived, 0);
  });
});
