/**
 * @module
 * Behaviour every network mesh backend (Redis, Deno KV) must show, run on
 * two in-memory relay cores joined by two links of the backend under test
 * (Hono's `common.case` pattern): each backend's test file calls
 * {@link meshCases} with a factory for its links.
 *
 * Unlike the in-process hub, a network backend delivers some time later,
 * and a key's claim takes effect some time after it connected. The cases
 * therefore resend until delivery (bounded), as a real client's QUIC
 * retransmissions would, and wait for counters instead of reading them at
 * once.
 */

import assert from "node:assert/strict";
import type { InstanceMesh } from "../../relay/server/mesh.ts";
import { DERP, type Generation, V2 } from "../../relay/proto/generation.ts";
import type { RelayCore } from "../../relay/server/relay_core.ts";
import { utf8 } from "./bytes.ts";
import { datagramsOf, datagramTo, FakeClock, type MemConn, memConnect, memCore } from "./mem_relay.ts";

/** Two links of one backend, and how to dispose of what backs them. */
export interface MeshLinks {
  /** One link per instance. */
  links: [InstanceMesh, InstanceMesh];
  /** Disposes of shared resources (after both links closed). */
  close(): Promise<void>;
}

/** Counters a backend may expose, checked where the shared cases can. */
export interface MeshBackendHooks {
  /** Datagrams the backend knows reached no holder (e.g. PUBLISH to 0 receivers), if it can tell. */
  unrouted?(link: InstanceMesh): number;
}

/** Resolves once `pred` holds, polling every 10 ms (counters have no event), or throws after `timeoutMs`. */
export async function eventually(pred: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Sends `text` from `from` to `to` until it arrives (resending every
 * `everyMs`, at most `timeoutMs` in all) and checks the source key.
 * @returns how many sends it took
 */
export async function deliverEventually(
  from: MemConn,
  to: MemConn,
  text: string,
  opts: { everyMs?: number; timeoutMs?: number } = {},
): Promise<number> {
  const everyMs = opts.everyMs ?? 250;
  const deadline = Date.now() + (opts.timeoutMs ?? 8000);
  const before = datagramsOf(to).length;
  const arrived = () =>
    datagramsOf(to).slice(before).find((d) => new TextDecoder().decode(d.data).startsWith(`${text}#`));
  for (let i = 1;; i++) {
    await from.feed(datagramTo(from, to.key, utf8(`${text}#${i}`)));
    try {
      await to.out.until(() => arrived() !== undefined, `datagram "${text}"`, everyMs);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      continue;
    }
    assert.deepEqual(arrived()!.src, from.key);
    return i;
  }
}

/** Two cores joined by `backend`'s links, for the duration of `fn`. */
export async function withTwoCores(
  open: () => Promise<MeshLinks>,
  fn: (one: RelayCore, two: RelayCore, links: [InstanceMesh, InstanceMesh]) => Promise<void>,
): Promise<void> {
  const { links, close } = await open();
  const clock = new FakeClock();
  const one = memCore(clock, { mesh: links[0] });
  const two = memCore(clock, { mesh: links[1] });
  try {
    await one.startMesh();
    await two.startMesh();
    await fn(one, two, links);
  } finally {
    one.close();
    two.close();
    // The core does not await its mesh's close; the test must, so nothing outlives it.
    await Promise.all(links.map((l) => l.close()));
    await close();
  }
}

/**
 * Registers the shared cases as `Deno.test`s named `<name>: …`.
 * @param name backend name for the test titles
 * @param open makes two fresh links (and whatever backs them) per test
 */
export function meshCases(name: string, open: () => Promise<MeshLinks>, hooks: MeshBackendHooks = {}): void {
  for (const [genName, gen] of [["0.35", DERP], ["1.x", V2]] as [string, Generation][]) {
    Deno.test(`${name} mesh: ${genName} clients on two instances exchange datagrams both ways`, async () => {
      await withTwoCores(open, async (one, two) => {
        const a = await memConnect(one, gen);
        const b = await memConnect(two, gen);
        await deliverEventually(a, b, "one to two");
        await deliverEventually(b, a, "two to one");
        assert.ok(one.metrics.c.meshForwarded >= 1 && two.metrics.c.meshReceived >= 1);
        assert.ok(two.metrics.c.meshForwarded >= 1 && one.metrics.c.meshReceived >= 1);
      });
    });

    Deno.test(`${name} mesh: EndpointGone reaches a ${genName} peer on the other instance`, async () => {
      await withTwoCores(open, async (one, two) => {
        const a = await memConnect(one, gen);
        const b = await memConnect(two, gen);
        await deliverEventually(a, b, "hello");
        a.client.close("test: a leaves");
        const gone = await b.out.nth(gen === DERP ? "PeerGone" : "EndpointGone", 1, 8000);
        assert.deepEqual((gone as { key: Uint8Array }).key, a.key);
      });
    });
  }

  Deno.test(`${name} mesh: a 0.35 and a 1.x client on different instances reach each other`, async () => {
    await withTwoCores(open, async (one, two) => {
      const old = await memConnect(one, DERP);
      const neu = await memConnect(two, V2);
      await deliverEventually(old, neu, "0.35 to 1.x");
      await deliverEventually(neu, old, "1.x to 0.35");
    });
  });

  Deno.test(`${name} mesh: a key reconnecting on the other instance takes over; datagrams follow it`, async () => {
    await withTwoCores(open, async (one, two) => {
      const a = await memConnect(one, V2);
      const bOld = await memConnect(one, V2);
      await deliverEventually(a, bOld, "before");
      const bNew = await memConnect(two, V2, bOld.secret);
      await bOld.out.until(() => bOld.out.closed, "the older connection to close", 8000);
      await deliverEventually(a, bNew, "follow the key");
    });
  });

  Deno.test(`${name} mesh: a datagram for a key connected nowhere is not delivered`, async () => {
    await withTwoCores(open, async (one, two, links) => {
      const a = await memConnect(one, V2);
      const ghost = await memConnect(two, V2);
      await deliverEventually(a, ghost, "while here");
      const received = two.metrics.c.meshReceived;
      ghost.client.close("test: leaves");
      await a.feed(datagramTo(a, ghost.key, utf8("late")));
      const unrouted = hooks.unrouted;
      // Either the backend knows nobody holds the key, or the other instance drops it: never delivered.
      await eventually(
        () => (unrouted ? unrouted(links[0]) >= 1 : false) || two.metrics.c.meshDropped >= 1,
        "the datagram to be counted as unroutable",
      );
      assert.equal(two.metrics.c.meshReceived, received);
    });
  });
}
