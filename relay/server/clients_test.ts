import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import { DERP, type Generation, V1, V2 } from "../proto/generation.ts";
import { utf8 } from "../../tests/support/bytes.ts";
import {
  datagramsOf,
  datagramTo,
  FakeClock,
  type MemConn,
  memConnect,
  memCore,
  type MemSender,
} from "../../tests/support/mem_relay.ts";
import type { RelayCore } from "./relay_core.ts";

const GENS: [string, Generation][] = [["derp", DERP], ["v1", V1], ["v2", V2]];

/** Runs `fn` with a fresh core, closing it afterwards. */
async function withCore(fn: (core: RelayCore, clock: FakeClock) => Promise<void>): Promise<void> {
  const clock = new FakeClock();
  const core = memCore(clock);
  try {
    await fn(core, clock);
  } finally {
    core.close();
  }
}

/** Sends `text` from `a` to `b`'s key and waits until `b` got it. */
async function deliver(a: MemConn, b: MemConn, text: string): Promise<void> {
  const before = datagramsOf(b).length;
  await a.feed(datagramTo(a, b.key, utf8(text)));
  await b.out.until(() => datagramsOf(b).length > before, `datagram "${text}"`);
  const got = datagramsOf(b).at(-1)!;
  assert.deepEqual(got.src, a.key);
  assert.equal(new TextDecoder().decode(got.data), text);
}

/** Lets queued writes run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise((r) => setTimeout(r, 0));
}

function statusOf(out: MemSender): (number | string)[] {
  return out.sent.flatMap((m): (number | string)[] =>
    m.type === "Status" ? [m.status] : m.type === "Health" ? [m.problem] : []
  );
}

for (const [name, gen] of GENS) {
  Deno.test(`Clients routes datagrams between two ${name} clients and forgets a closed one (test_clients)`, async () => {
    await withCore(async (core) => {
      const a = await memConnect(core, gen);
      const b = await memConnect(core, gen);
      assert.equal(core.connectedKeys, 2);
      await deliver(a, b, "a->b");
      await deliver(b, a, "b->a");
      a.client.close("test");
      assert.equal(a.out.closed, true);
      assert.equal(core.connectedKeys, 1);
      assert.deepEqual(core.connectedKeyList(), [b.key]);
    });
  });

  Deno.test(`Clients sends ${name === "derp" ? "PeerGone" : "EndpointGone"} to peers A sent to when A leaves (test_peer_gone_notification, ${name})`, async () => {
    await withCore(async (core) => {
      const a = await memConnect(core, gen);
      const b = await memConnect(core, gen);
      const c = await memConnect(core, gen); // never received from A
      await deliver(a, b, "hello");
      a.client.close("test");
      const type = gen === DERP ? "PeerGone" : "EndpointGone";
      const gone = await b.out.nth(type);
      assert.deepEqual(gone.key, a.key);
      await settle();
      assert.equal(c.out.ofType(type).length, 0, "C never got traffic from A");
      assert.equal(a.out.ofType(type).length, 0, "the departing client is not told (upstream #4079)");
    });
  });
}

Deno.test("Clients lets a client send to itself", async () => {
  await withCore(async (core) => {
    const a = await memConnect(core, V2);
    await deliver(a, a, "me");
  });
});

Deno.test("Clients drops datagrams to unknown keys silently and counts them", async () => {
  await withCore(async (core) => {
    const a = await memConnect(core, V2);
    const nobody = ed25519.getPublicKey(ed25519.utils.randomSecretKey());
    await a.feed(datagramTo(a, nobody, utf8("lost")));
    await settle();
    assert.equal(core.metrics.c.sendPacketsDropped, 1);
    assert.equal(a.client.closed, false);
    assert.deepEqual(a.out.sent.map((m) => m.type), ["ServerChallenge", "ServerConfirmsAuth"], "nothing goes back");
  });
});

Deno.test("Clients closes a sender that addresses a key that is not a curve point (upstream decode error)", async () => {
  await withCore(async (core) => {
    const a = await memConnect(core, V2);
    let bogus = new Uint8Array(32);
    for (let i = 2;; i++) {
      bogus = new Uint8Array(32);
      bogus[0] = i;
      try {
        ed25519.Point.fromBytes(bogus);
      } catch {
        break; // y = i has no x on the curve
      }
    }
    await a.feed(datagramTo(a, bogus, utf8("x")));
    assert.equal(a.client.closed, true);
  });
});

for (const [name, gen] of [["v1", V1], ["v2", V2]] as const) {
  Deno.test(`Clients keeps a duplicate ${name} key inactive and re-promotes it (test_clients_same_endpoint_id, ${name})`, async () => {
    await withCore(async (core) => {
      const secret = ed25519.utils.randomSecretKey();
      const peer = await memConnect(core, gen);
      const a1 = await memConnect(core, gen, secret);
      const a2 = await memConnect(core, gen, secret);
      const inactiveNotice = gen === V2
        ? 1
        : "Another endpoint connected with the same endpoint id. No more messages will be received.";
      const healthyNotice = gen === V2 ? 0 : "The connection is healthy and has recovered from previous problems";
      await a1.out.until(() => statusOf(a1.out).length === 1, "inactive notice");
      assert.deepEqual(statusOf(a1.out), [inactiveNotice]);
      assert.deepEqual(statusOf(a2.out), [], "the newcomer is told nothing");
      assert.equal(a1.client.state, "inactive");
      assert.equal(a1.out.closed, false, "the old connection stays open");

      await deliver(peer, a2, "to the newest");
      assert.equal(datagramsOf(a1).length, 0, "the inactive connection gets no datagrams");

      // An inactive connection can still send and ping.
      await deliver(a1, peer, "from inactive");
      await a1.feed({ type: "Ping", data: new Uint8Array(8).fill(5) });
      await a1.out.nth("Pong");

      a2.client.close("newest leaves");
      await a1.out.until(() => statusOf(a1.out).length === 2, "healthy notice");
      assert.deepEqual(statusOf(a1.out), [inactiveNotice, healthyNotice]);
      assert.equal(a1.client.state, "active");
      await deliver(peer, a1, "back to the old one");

      a1.client.close("last leaves");
      assert.equal(core.connectedKeys, 1, "the key entry is gone");
      assert.equal(core.metrics.c.clientsInactiveAdded, 1);
      assert.equal(core.metrics.c.clientsInactiveRemoved, 1);
    });
  });
}

Deno.test("Clients promotes the most recently demoted connection first, and drops closed inactive ones quietly", async () => {
  await withCore(async (core) => {
    const secret = ed25519.utils.randomSecretKey();
    const peer = await memConnect(core, V2);
    const a1 = await memConnect(core, V2, secret);
    const a2 = await memConnect(core, V2, secret);
    const a3 = await memConnect(core, V2, secret);
    await a2.out.until(() => statusOf(a2.out).length === 1, "a2 demoted");
    // a1 (inactive) leaves: nobody is told anything.
    a1.client.close("inactive leaves");
    await settle();
    assert.deepEqual(statusOf(a3.out), []);
    assert.deepEqual(statusOf(a2.out), [1]);
    a3.client.close("active leaves");
    await a2.out.until(() => statusOf(a2.out).length === 2, "a2 promoted");
    assert.deepEqual(statusOf(a2.out), [1, 0]);
    await deliver(peer, a2, "to a2");
  });
});

Deno.test("Clients does not send EndpointGone while another connection of the key remains", async () => {
  await withCore(async (core) => {
    const secret = ed25519.utils.randomSecretKey();
    const b = await memConnect(core, V2);
    const a1 = await memConnect(core, V2, secret);
    const a2 = await memConnect(core, V2, secret);
    await deliver(a2, b, "hi");
    a2.client.close("active leaves");
    await a1.out.until(() => statusOf(a1.out).length === 2, "a1 promoted");
    assert.equal(b.out.ofType("EndpointGone").length, 0);
    a1.client.close("last leaves");
    const gone = await b.out.nth("EndpointGone");
    assert.deepEqual(gone.key, a1.key);
  });
});

Deno.test("Clients clears sent_to when a key leaves: a second visit that sends nothing notifies nobody", async () => {
  await withCore(async (core) => {
    const secret = ed25519.utils.randomSecretKey();
    const b = await memConnect(core, V2);
    const a = await memConnect(core, V2, secret);
    await deliver(a, b, "hi");
    a.client.close("leave");
    await b.out.nth("EndpointGone");
    const again = await memConnect(core, V2, secret);
    again.client.close("leave again");
    await settle();
    assert.equal(b.out.ofType("EndpointGone").length, 1);
  });
});

for (
  const [oldName, oldGen, newName, newGen] of [
    ["derp", DERP, "derp", DERP],
    ["v2", V2, "derp", DERP],
    ["derp", DERP, "v2", V2],
    ["v1", V1, "derp", DERP],
  ] as const
) {
  Deno.test(`Clients closes the old ${oldName} connection when a ${newName} one takes its key (0.35 rule, test_server_replace_client)`, async () => {
    await withCore(async (core) => {
      const secret = ed25519.utils.randomSecretKey();
      const peer = await memConnect(core, V2);
      const old = await memConnect(core, oldGen, secret);
      const fresh = await memConnect(core, newGen, secret);
      assert.equal(old.out.closed, true);
      assert.equal(old.client.closed, true);
      assert.deepEqual(statusOf(old.out), [], "a 0.35 duplicate is closed with no frame");
      assert.equal(core.connectedKeys, 2);
      await deliver(peer, fresh, "to the new one");
      await deliver(fresh, peer, "and back");
      assert.equal(core.clientsPerGeneration["0.35"] + core.clientsPerGeneration["1.x"], 2);
    });
  });
}

Deno.test("Clients never sends a 1.x frame type to a 0.35 connection", async () => {
  await withCore(async (core) => {
    const secret = ed25519.utils.randomSecretKey();
    const d = await memConnect(core, DERP);
    const v = await memConnect(core, V2, secret);
    await deliver(v, d, "x");
    await deliver(d, v, "y");
    v.client.close("leave");
    await d.out.nth("PeerGone");
    const v2 = await memConnect(core, V2, secret);
    await deliver(v2, d, "z");
    const derpTypes = new Set(["RecvPacket", "PeerGone", "Pong", "Ping", "Health", "KeepAlive", "Restarting"]);
    for (const m of d.out.sent) assert.ok(derpTypes.has(m.type), `0.35 connection got ${m.type}`);
  });
});

Deno.test("RelayCore.setAccess() closes connections the new policy denies, active and inactive (revoked_token_disconnects_every_endpoint_connection)", async () => {
  await withCore(async (core) => {
    const secret = ed25519.utils.randomSecretKey();
    const a1 = await memConnect(core, V2, secret);
    const a2 = await memConnect(core, V2, secret);
    const b = await memConnect(core, DERP);
    await core.setAccess({ mode: "denylist", keys: [a1.key] });
    assert.equal(a1.client.closed, true);
    assert.equal(a2.client.closed, true);
    assert.equal(b.client.closed, false);
    assert.deepEqual(core.connectedKeyList(), [b.key]);
    // And the revoked key cannot come back.
    const again = await memConnect(core, V2, secret);
    await again.out.until(() => again.out.closed, "refused");
    assert.deepEqual(again.out.sent.at(-1), { type: "ServerDeniesAuth", reason: "not authorized" });
  });
});
