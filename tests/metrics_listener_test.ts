/**
 * The metrics port runs on the relay's raw transport: the same request-head
 * deadline (establish timeout) and head-size limit, so 500 connections that
 * trickle a request head byte by byte are all closed while a scrape from
 * another address is still answered; plus admission (a scraper or two, not
 * thousands) and the smuggling refusals.
 */

import assert from "node:assert/strict";
import * as net from "node:net";
import { configFromText } from "../config/mod.ts";
import { startRelay } from "../relay/mod.ts";
import { eventually, getFrom, httpFrom } from "./support/service_process.ts";

async function relayWithMetrics() {
  const { config } = configFromText('http_bind_addr = "127.0.0.1:0"\nmetrics_bind_addr = "127.0.0.1:0"\n', "t.toml");
  const relay = await startRelay(config, { core: { establishTimeoutMs: 800, tickMs: 50 } });
  return { relay, port: relay.metricsAddr!.port };
}

Deno.test("metrics port: 500 trickling request heads are closed at the head deadline; scrapes still answered", async () => {
  const { relay, port } = await relayWithMetrics();
  const socks: net.Socket[] = [];
  try {
    let closed = 0;
    // 20 source addresses × 25 connections (the metrics port admits 32 per source).
    for (let i = 0; i < 500; i++) {
      const s = net.connect({ host: "127.0.0.1", port, localAddress: `127.0.0.${10 + (i % 20)}` });
      s.on("error", () => {});
      s.on("close", () => closed++);
      socks.push(s);
    }
    const head = "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    let i = 0;
    const trickle = setInterval(() => {
      for (const s of socks) if (!s.destroyed) s.write(head[i % head.length]!);
      i++;
    }, 100);
    try {
      const t0 = performance.now();
      // Scrapes from another address keep working during the trickle.
      const scrape = await getFrom(port, "/metrics", "127.0.0.2");
      assert.equal(scrape.status, 200);
      assert.match(scrape.body, /relayserver_bytes_sent_total/);
      assert.ok(await eventually(() => closed === 500, 10_000), `${closed} of 500 closed`);
      const after = await getFrom(port, "/metrics", "127.0.0.2");
      const refused = Number(
        /admission_refused_total\{listener="metrics",reason="global"\} (\d+)/.exec(after.body)![1],
      );
      // The metrics port admits 256 at once: the rest were refused at accept, the admitted ones hit the deadline.
      assert.ok(refused <= 500 - 200, `${refused} refused at accept`);
      console.log(
        `500 trickling heads on the metrics port: all closed after ${(performance.now() - t0).toFixed(0)} ms ` +
          `(${refused} refused at accept by the global cap, ${500 - refused} closed at the head deadline)`,
      );
    } finally {
      clearInterval(trickle);
    }
  } finally {
    for (const s of socks) s.destroy();
    await relay.close();
  }
});

Deno.test("metrics port: head size limit, smuggling refusals and per-source admission", async () => {
  const { relay, port } = await relayWithMetrics();
  try {
    const big = await httpFrom(port, `GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: ${"a".repeat(40_000)}\r\n\r\n`);
    assert.equal(big.status, 431);
    const cl = await httpFrom(
      port,
      "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    );
    assert.equal(cl.status, 400);
    assert.equal(cl.closed, true);
    // 32 connections per source; the 33rd from the same address is closed at accept.
    const held: net.Socket[] = [];
    for (let i = 0; i < 32; i++) {
      const s = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.3" });
      s.on("error", () => {});
      held.push(s);
    }
    await Promise.all(held.map((s) => new Promise((r) => s.once("connect", r))));
    await assert.rejects(getFrom(port, "/metrics", "127.0.0.3", 3000));
    const ok = await getFrom(port, "/metrics", "127.0.0.4");
    assert.match(ok.body, /admission_refused_total\{listener="metrics",reason="source_connections"\} 1/);
    for (const s of held) s.destroy();
    const health = JSON.parse((await getFrom(port, "/healthz", "127.0.0.4")).body);
    assert.equal(health.status, "ok");
    assert.equal(typeof health.relay.open_connections, "number");
  } finally {
    await relay.close();
  }
});
