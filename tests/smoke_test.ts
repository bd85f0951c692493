import assert from "node:assert/strict";
import { configFromText } from "../config/mod.ts";
import { startRelay } from "../relay/mod.ts";
import { connectClient } from "./support/relay_client.ts";

Deno.test("smoke: derp, ws035, v1, v2 exchange packets", async () => {
  const { config } = configFromText('http_bind_addr = "127.0.0.1:0"\nenable_metrics = false', "t");
  const relay = await startRelay(config);
  const port = relay.httpAddr!.port;
  const kinds = ["derp", "ws035", "v1", "v2"] as const;
  const clients = await Promise.all(kinds.map((k) => connectClient(port, k)));
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
  for (const c of clients) c.close();
  await relay.close();
});

Deno.test("startRelay() refuses a [mesh] config without a backend instead of running unlinked", async () => {
  const { config } = configFromText(
    'http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\n[mesh]\nbackend = "redis"',
    "t",
  );
  await assert.rejects(() => startRelay(config), /\[mesh\] is configured but no backend was passed/);
});
