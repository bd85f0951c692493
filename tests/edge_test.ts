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
