/**
 * @module
 * Interop of our relay with the real iroh 1.x library (npm `@number0/iroh`
 * 1.1.0, the Node-API binding of the Rust `iroh` 1.0 crate), not with our
 * spec-written test clients.
 *
 * Set-up of each test:
 * - the relay runs in this process on `127.0.0.1:<random>`;
 * - each real endpoint (`support/iroh_peer.cjs`) runs in its own
 *   loopback-only network namespace (`support/netns.ts`) where the relay
 *   appears as `http://127.0.0.1:3340/`; the bridge is the endpoint's only way
 *   out, so hole punching finds nothing and every QUIC packet crosses the
 *   relay;
 * - the bridge parses the `/relay` upgrade and the WebSocket frames on it
 *   ({@link RelayWireObserver}), which shows the negotiated subprotocol and
 *   the relay frame types in each direction, and can rewrite the offered
 *   subprotocols to force `iroh-relay-v1`;
 * - the dialer knows only the acceptor's id and the relay URL (no direct
 *   addresses) and echoes {@link PAYLOAD_BYTES} on one bidirectional stream.
 *
 * Spec: §1.2 (subprotocol negotiation), §2.3 (1.x frames), §8 (`/ping` makes a
 * 1.x client go online).
 */

import assert from "node:assert/strict";
import { configFromText } from "../config/mod.ts";
import { type RelayService, type StartOptions, startRelay } from "../relay/mod.ts";
import {
  assertRelayedEcho,
  ECHO_TIMEOUT_MS,
  type EchoResult,
  echoThroughRelay,
  logEcho,
  PAYLOAD_BYTES,
  R2C_TYPES,
  RELAY_PORT_IN_NS,
  RelayWireObserver,
  startPeer,
} from "./support/iroh_echo.ts";
import { Netns } from "./support/netns.ts";
import { connectClient, type TestRelayClient } from "./support/relay_client.ts";

/** Starts a relay on a random loopback port, runs `fn`, always closes the relay. */
async function withRelay(
  fn: (relay: RelayService, port: number) => Promise<void>,
  options: StartOptions = {},
): Promise<void> {
  const { config } = configFromText('http_bind_addr = "127.0.0.1:0"\nenable_metrics = false', "iroh_interop_test");
  const relay = await startRelay(config, options);
  try {
    await fn(relay, relay.httpAddr!.port);
  } finally {
    await relay.close();
  }
}

Deno.test("real iroh 1.x endpoints echo 1 MiB through the relay over iroh-relay-v2", async () => {
  await withRelay(async (relay, port) => {
    const wires = [new RelayWireObserver(), new RelayWireObserver()] as const;
    await using nsA = await Netns.create([wires[0].forward(port)]);
    await using nsB = await Netns.create([wires[1].forward(port)]);
    const r = await echoThroughRelay(relay, nsA, nsB);
    logEcho("v2", r, wires);
    assertRelayedEcho(r);
    assert.deepEqual(r.gauge, { "0.35": 0, "1.x": 2 });
    for (const w of wires) {
      // The real client offers both and our relay picks the newest (spec §1.2).
      assert.deepEqual(w.offered, ["iroh-relay-v2, iroh-relay-v1"]);
      assert.deepEqual(w.negotiated, ["iroh-relay-v2"]);
      assert.deepEqual(w.problems, []);
      assert.ok([...w.down].every((t) => (R2C_TYPES[2] as readonly number[]).includes(t)), `down ${[...w.down]}`);
    }
    // Bytes crossed each namespace's bridge, its only way out.
    assert.ok(nsB.stats(RELAY_PORT_IN_NS).bytesUp >= PAYLOAD_BYTES);
    assert.ok(nsB.stats(RELAY_PORT_IN_NS).bytesDown >= PAYLOAD_BYTES);
  });
});

Deno.test("real iroh 1.x endpoints echo through the relay when only iroh-relay-v1 is offered", async () => {
  await withRelay(async (relay, port) => {
    const wires = [new RelayWireObserver("iroh-relay-v1"), new RelayWireObserver("iroh-relay-v1")] as const;
    await using nsA = await Netns.create([wires[0].forward(port)]);
    await using nsB = await Netns.create([wires[1].forward(port)]);
    const r = await echoThroughRelay(relay, nsA, nsB);
    logEcho("v1", r, wires);
    assertRelayedEcho(r);
    assert.deepEqual(r.gauge, { "0.35": 0, "1.x": 2 });
    for (const w of wires) {
      assert.deepEqual(w.offered, ["iroh-relay-v1"]);
      assert.deepEqual(w.negotiated, ["iroh-relay-v1"]);
      assert.deepEqual(w.problems, []);
      // A v1 client treats Status (13) as fatal: the relay must speak v1 framing to it.
      assert.ok([...w.down].every((t) => (R2C_TYPES[1] as readonly number[]).includes(t)), `down ${[...w.down]}`);
      assert.ok(w.down.has(6) || w.down.has(7), `no datagram frames down: ${[...w.down]}`);
    }
  });
});

Deno.test("0.35 clients exchange packets while real iroh 1.x endpoints (v2 and v1) echo on the same relay", async () => {
  await withRelay(async (relay, port) => {
    const wires = [new RelayWireObserver(), new RelayWireObserver("iroh-relay-v1")] as const;
    await using nsA = await Netns.create([wires[0].forward(port)]);
    await using nsB = await Netns.create([wires[1].forward(port)]);
    const old: TestRelayClient[] = [];
    try {
      old.push(await connectClient(port, "derp"), await connectClient(port, "ws035"));
      // A Pong means the relay has registered the 0.35 client (ClientInfo gets no reply).
      for (const c of old) await c.ping();
      const [derp, ws] = old as [TestRelayClient, TestRelayClient];

      // The 0.35 exchange starts before the iroh echo and stops only once the echo is done.
      let echoFinished = false;
      const exchange = (async () => {
        const deadline = Date.now() + ECHO_TIMEOUT_MS;
        let rounds = 0;
        while (!echoFinished && Date.now() < deadline && rounds < 1_000_000) {
          rounds++;
          for (const [from, to] of [[derp, ws], [ws, derp]] as const) {
            const text = `${from.kind}->${to.kind} #${rounds}`;
            await from.send(to.publicKey, new TextEncoder().encode(text));
            const got = await to.recv();
            assert.equal(new TextDecoder().decode(got.data), text);
            assert.deepEqual(got.src, from.publicKey);
          }
        }
        return { rounds, stoppedByEcho: echoFinished };
      })();
      // Awaited after the echo; a failure meanwhile must not count as unhandled.
      exchange.catch(() => {});
      let r: EchoResult;
      try {
        r = await echoThroughRelay(relay, nsA, nsB);
      } finally {
        echoFinished = true;
      }
      const ex = await exchange;
      logEcho("mixed (v2 + v1)", r, wires);
      console.log(`0.35 exchange: ${ex.rounds} round trips (derp <-> ws035) during the echo`);
      assert.ok(ex.stoppedByEcho && ex.rounds > 0, `exchange: ${JSON.stringify(ex)}`);
      assertRelayedEcho(r);
      assert.deepEqual(r.gauge, { "0.35": 2, "1.x": 2 });
      assert.deepEqual(wires.map((w) => w.negotiated), [["iroh-relay-v2"], ["iroh-relay-v1"]]);
      assert.ok(old.every((c) => !c.closed), "a 0.35 client was disconnected");
    } finally {
      for (const c of old) c.close();
      await Promise.all(old.map((c) => c.ended));
    }
  });
});

Deno.test("a real iroh 1.x client answers the relay's pings and keeps its connection", async () => {
  // Ping after 0 ms of silence, and the smallest jitter (the client draws it from one random byte): a ping about
  // every second instead of every 16-20 s. Everything else stays random.
  const random = (n: number) => n === 1 ? new Uint8Array(1) : crypto.getRandomValues(new Uint8Array(n));
  await withRelay(async (relay, port) => {
    const wire = new RelayWireObserver();
    await using ns = await Netns.create([wire.forward(port)]);
    await startPeer(ns, { mode: "accept-echo" });
    // A second relay Ping proves the first Pong matched: a pending ping either gets its pong or closes the client.
    const pingsAnswered = (frames: readonly { dir: string; type: number }[]) =>
      frames.filter((f) => f.dir === "down" && f.type === 9).length >= 2 &&
      frames.filter((f) => f.dir === "up" && f.type === 10).length >= 2;
    await wire.waitForFrames(pingsAnswered, 15_000);
    assert.equal(relay.core.metrics.c.disconnects, 0);
    assert.deepEqual(relay.core.clientsPerGeneration, { "0.35": 0, "1.x": 1 });
    assert.equal(wire.negotiated.length, 1, "the client reconnected");
    assert.ok(relay.core.metrics.c.otherPacketsRecv >= 2);
  }, { core: { pingAfterMs: 0, random } });
});
