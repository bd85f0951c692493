/**
 * The relay core behind `Deno.serve` (the edge form): 1.x and 0.35
 * WebSocket clients exchange packets, the derp upgrade gets a clear 400,
 * and plain endpoints answer as on the raw listener.
 */

import assert from "node:assert/strict";
import { createFetchHandler } from "../relay/transport/fetch_handler.ts";
import { RelayCore } from "../relay/server/relay_core.ts";
import { connectClient } from "./support/relay_client.ts";

async function withEdge(fn: (port: number, core: RelayCore) => Promise<void>): Promise<void> {
  const core = new RelayCore();
  const handler = createFetchHandler(core, { health: { version: "test", gitHash: "test" } });
  const ac = new AbortController();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} }, handler);
  try {
    await fn(server.addr.port, core);
  } finally {
    core.close();
    ac.abort();
    await server.finished;
  }
}

Deno.test("edge handler relays between v2, v1 and 0.35 WebSocket clients", async () => {
  await withEdge(async (port, core) => {
    const kinds = ["v2", "v1", "ws035"] as const;
    const clients = await Promise.all(kinds.map((k) => connectClient(port, k)));
    try {
      for (const c of clients) await c.ping();
      for (const a of clients) {
        for (const b of clients) {
          if (a === b) continue;
          await a.send(b.publicKey, new TextEncoder().encode(`${a.kind}->${b.kind}`));
          const got = await b.recv();
          assert.equal(new TextDecoder().decode(got.data), `${a.kind}->${b.kind}`);
          assert.deepEqual(got.src, a.publicKey);
        }
      }
      assert.deepEqual({ ...core.clientsPerGeneration }, { "0.35": 1, "1.x": 2 });
      assert.equal(clients[0]!.response.headers.get("sec-websocket-protocol"), "iroh-relay-v2");
    } finally {
      for (const c of clients) c.close();
    }
  });
});

Deno.test("edge handler refuses the derp upgrade with an explanation", async () => {
  await withEdge(async (port) => {
    await assert.rejects(connectClient(port, "derp"), /400 .*WebSocket clients only/);
    const ping = await fetch(`http://127.0.0.1:${port}/ping`);
    await ping.body?.cancel();
    assert.equal(ping.status, 200);
    assert.equal(ping.headers.get("access-control-allow-origin"), "*");
  });
});

Deno.test("edge handler: bursts of datagrams arrive intact and in order (send buffers are not reused early)", async () => {
  // The runtime WebSocket sender hands the client's write buffer to `send` without copying it
  // and the client reuses that buffer as soon as the write returns: this holds only because
  // Deno copies in `send`. A burst makes the reuse happen while earlier frames are queued.
  await withEdge(async (port) => {
    const [a, b] = await Promise.all([connectClient(port, "v2"), connectClient(port, "ws035")]);
    try {
      await a.ping();
      await b.ping();
      const bursts = 4;
      const perBurst = 200;
      for (const [from, to] of [[a, b], [b, a]] as const) {
        for (let k = 0; k < bursts; k++) {
          const frames: Uint8Array[] = [];
          for (let i = 0; i < perBurst; i++) {
            const seq = k * perBurst + i;
            const data = new Uint8Array(1000).fill(seq & 0xff);
            new DataView(data.buffer).setUint32(0, seq);
            frames.push(
              from.frame(
                from.kind === "ws035"
                  ? { type: "SendPacket", dstKey: to.publicKey, packet: data }
                  : { type: "ClientToRelayDatagram", dstKey: to.publicKey, ecn: 0, contents: data },
              ),
            );
          }
          const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
          frames.reduce((off, f) => (all.set(f, off), off + f.length), 0);
          await from.writeRaw(all);
          for (let i = 0; i < perBurst; i++) {
            const seq = k * perBurst + i;
            const got = (await to.recv()).data;
            assert.equal(got.length, 1000);
            assert.equal(new DataView(got.buffer, got.byteOffset).getUint32(0), seq, `${from.kind} datagram ${seq}`);
            assert.ok(got.subarray(4).every((v) => v === (seq & 0xff)), `${from.kind} datagram ${seq} intact`);
          }
        }
      }
    } finally {
      a.close();
      b.close();
    }
  });
});
