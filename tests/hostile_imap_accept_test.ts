/**
 * IMAP admission against the real process: one source holding idle
 * connections is limited to `max_sessions_per_source` (the issue: 1,000 idle
 * TCP connections locked everyone out for ~60 s), another source still gets
 * a greeting and logs in, and the refusals are counted per reason.
 */

import assert from "node:assert/strict";
import * as net from "node:net";
import { eventually, metric, ServiceProcess } from "./support/service_process.ts";

/** Connects from `localAddress` and resolves with the first line the server sends ("" if it closes first). */
function greetingFrom(port: number, localAddress: string): Promise<{ line: string; sock: net.Socket }> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port, localAddress });
    let text = "";
    sock.on("error", () => {});
    sock.on("data", (d: Uint8Array) => {
      text += new TextDecoder().decode(d);
      if (text.includes("\r\n")) resolve({ line: text.slice(0, text.indexOf("\r\n")), sock });
    });
    sock.on("close", () => resolve({ line: text, sock }));
  });
}

Deno.test("IMAP: 1,000 idle connections from one source take 32 slots; another source logs in", async () => {
  const p = await ServiceProcess.start(`
http_bind_addr = "127.0.0.1:0"
metrics_bind_addr = "127.0.0.1:0"
[imap]
bind_addr = "127.0.0.1:0"
iroh_relay_url = "https://relay.example/"
[imap.limits]
source_connects_per_sec = 0
`);
  const socks: net.Socket[] = [];
  try {
    const port = await p.port(/imap:\/\/127\.0\.0\.1:(\d+)/);
    const metricsPort = await p.port(/metrics on http:\/\/127\.0\.0\.1:(\d+)/);
    let greeted = 0;
    let refused = 0;
    const results = await Promise.all(Array.from({ length: 1000 }, () => greetingFrom(port, "127.0.0.1")));
    for (const r of results) {
      socks.push(r.sock);
      if (r.line.startsWith("* OK")) greeted++;
      else refused++;
    }
    assert.equal(greeted, 32);
    assert.equal(refused, 968);
    // Another source: greeted and logged in at once.
    const other = await greetingFrom(port, "127.0.0.2");
    socks.push(other.sock);
    assert.match(other.line, /^\* OK/);
    const login = await new Promise<string>((resolve) => {
      other.sock.on("data", (d: Uint8Array) => resolve(new TextDecoder().decode(d)));
      other.sock.write("a LOGIN u p\r\n");
    });
    assert.match(login, /^a OK/m);
    assert.ok(
      await eventually(
        async () =>
          (await metric(metricsPort, "admission_refused_total", 'listener="imap",reason="source_connections"')) === 968,
        5000,
      ),
    );
  } finally {
    for (const s of socks) s.destroy();
    await p.stop();
  }
});
