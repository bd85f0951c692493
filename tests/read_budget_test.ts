/**
 * The process-wide allowance of large read buffers (relay/transport/upgrade.ts):
 * busy connections grow their read buffers out of it and give everything
 * back when they end, and with the allowance used up connections still
 * work, reading in small pieces.
 */

import assert from "node:assert/strict";
import { configFromText } from "../config/mod.ts";
import { READ_BUDGET_BYTES, ReadBudget, startRelay } from "../relay/mod.ts";
import { connectClient } from "./support/relay_client.ts";

async function bulk(budget: ReadBudget): Promise<number> {
  const { config } = configFromText('http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\nenable_stun = false', "t");
  const relay = await startRelay(config, { readBudget: budget });
  try {
    const port = relay.httpAddr!.port;
    const a = await connectClient(port, "derp");
    const b = await connectClient(port, "derp");
    await a.ping();
    await b.ping();
    // 64 datagrams of 60 KB written at once: several full reads, so a's read buffer grows.
    const pkt = new Uint8Array(60_000).fill(7);
    const burst: Uint8Array[] = [];
    for (let i = 0; i < 64; i++) burst.push(a.frame({ type: "SendPacket", dstKey: b.publicKey, packet: pkt }));
    await a.writeRaw(new Uint8Array(burst.flatMap((f) => [...f])));
    let got = 0;
    for (let i = 0; i < 64; i++) got += (await b.recv()).data.length;
    const inUse = READ_BUDGET_BYTES - budget.left;
    a.close();
    b.close();
    await Promise.all([a.ended, b.ended]);
    assert.equal(got, 64 * 60_000);
    return inUse;
  } finally {
    await relay.close();
  }
}

Deno.test("ReadBudget: growing read buffers draw on it, and all of it comes back when the connections end", async () => {
  const budget = new ReadBudget();
  const inUse = await bulk(budget);
  assert.ok(inUse > 0, "a busy connection grew its read buffer");
  assert.equal(budget.left, READ_BUDGET_BYTES);
});

Deno.test("ReadBudget: with nothing left, connections keep working on small buffers", async () => {
  const budget = new ReadBudget(0);
  const inUse = await bulk(budget);
  assert.equal(inUse, READ_BUDGET_BYTES, "nothing could be taken");
  assert.equal(budget.left, 0);
});
