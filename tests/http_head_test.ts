/**
 * HEAD is answered wherever GET is, as health checks (`curl -I /ping`)
 * expect: same status and headers, `Content-Length` of the GET body, no body
 * bytes, so the next request on a kept-alive connection is read correctly.
 * On the raw relay listener, the captive portal, and the `Deno.serve` edge
 * handler.
 */

import assert from "node:assert/strict";
import { createFetchHandler } from "../relay/transport/fetch_handler.ts";
import { RelayCore } from "../relay/server/relay_core.ts";
import { withRelay } from "./support/relay_scope.ts";
import { dial, writeAllRaw } from "./support/http_raw.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

async function readToEnd(conn: Deno.Conn): Promise<string> {
  const chunks: string[] = [];
  const dec = new TextDecoder();
  const buf = new Uint8Array(16 * 1024);
  for (let i = 0; i < 1000; i++) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(dec.decode(buf.subarray(0, n), { stream: true }));
  }
  return chunks.join("");
}

Deno.test("relay: curl -I gets 200 for /ping, /, /healthz and /generate_204", () =>
  withRelay({}, async (s) => {
    for (
      const [path, status] of [["/ping", 200], ["/", 200], ["/healthz", 200], ["/generate_204", 204], ["/nope", 404]]
    ) {
      const out = await new Deno.Command("curl", {
        args: ["-sS", "-I", "-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:${s.port}${path}`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(
        new TextDecoder().decode(out.stdout),
        String(status),
        `HEAD ${path}: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
  }));

Deno.test("relay: HEAD on a kept-alive connection sends the GET length but no body, and the next request works", () =>
  withRelay({}, async (s) => {
    const conn = s.own(await dial(s.port));
    await writeAllRaw(
      conn,
      utf8("HEAD /healthz HTTP/1.1\r\nHost: h\r\n\r\nGET /robots.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    );
    const text = await readToEnd(conn);
    const [headResponse, rest] = text.split("\r\n\r\n", 2) as [string, string];
    assert.match(headResponse, /^HTTP\/1\.1 200 /);
    assert.match(headResponse, /\r\ncontent-type: application\/json\r\n/i);
    const length = Number(/\r\nContent-Length: (\d+)/i.exec(headResponse)?.[1]);
    assert.ok(length > 10, "HEAD announces the length of the GET body");
    assert.match(rest, /^HTTP\/1\.1 200 /, "the second response follows the HEAD head directly");
    assert.ok(text.endsWith("User-agent: *\nDisallow: /\n"));
  }));

Deno.test("relay: the captive portal answers HEAD /generate_204 behind TLS", () =>
  withRelay({
    toml: `[tls]\ncert_mode = "Manual"\nhttps_bind_addr = "127.0.0.1:0"\n` +
      `manual_cert_path = "${new URL("./fixtures/localhost.crt", import.meta.url).pathname}"\n` +
      `manual_key_path = "${new URL("./fixtures/localhost.key", import.meta.url).pathname}"\n`,
  }, async (s) => {
    const conn = s.own(await dial(s.port));
    await writeAllRaw(conn, utf8("HEAD /generate_204 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
    assert.match(await readToEnd(conn), /^HTTP\/1\.1 204 /);
  }));

Deno.test("edge handler answers HEAD like GET", async () => {
  const core = new RelayCore();
  const handler = createFetchHandler(core, { health: { version: "test", gitHash: "test" } });
  const ac = new AbortController();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} }, handler);
  try {
    for (const path of ["/ping", "/healthz", "/robots.txt"]) {
      const res = await fetch(`http://127.0.0.1:${server.addr.port}${path}`, { method: "HEAD" });
      assert.equal(res.status, 200, path);
      assert.equal(await res.text(), "");
    }
  } finally {
    core.close();
    ac.abort();
    await server.finished;
  }
});
