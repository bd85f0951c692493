/**
 * Other services' HTTP routes on the relay listener (raw TCP) and on the
 * edge fetch handler: bodies reach the route whole and bounded, GET bodies
 * too (Matrix `relay_txn`), oversize bodies get 413 unread, a failing route
 * answers 500 without harming the connection's next request, and the relay's
 * own endpoints still answer beside them.
 */

import assert from "node:assert/strict";
import { configFromText } from "../config/mod.ts";
import { createFetchHandler, type HttpRoute, RelayCore, requestBytes, startRelay } from "../relay/mod.ts";
import { serveListener } from "../relay/transport/tcp.ts";
import { AdmissionGate, AdmissionMetrics, PlainAcceptor } from "../admission/mod.ts";
import { dial, getHeader, rawRequest, readResponse, writeAllRaw } from "./support/http_raw.ts";

const enc = new TextEncoder();

function routes(seen: { remote?: string; url?: string }): HttpRoute[] {
  return [
    {
      prefix: "/echo/",
      maxBodyBytes: 1000,
      async handle(req, info) {
        seen.remote = info.remote;
        seen.url = req.url;
        const body = await requestBytes(req);
        return new Response(
          `${req.method} ${new URL(req.url).pathname} ${body.length} ${new TextDecoder().decode(body)}`,
          {
            headers: { "X-Route": "echo" },
          },
        );
      },
    },
    { prefix: "/echo/deeper/", maxBodyBytes: 10, handle: () => new Response("deeper") },
    {
      prefix: "/boom",
      maxBodyBytes: 0,
      handle() {
        throw new Error("route failed on purpose");
      },
    },
  ];
}

Deno.test("relay listener: routes get bounded bodies (GET too), 413 unread, 500 on a throw, keep-alive goes on", async () => {
  const { config } = configFromText('http_bind_addr = "127.0.0.1:0"\nenable_metrics = false', "inline");
  const seen: { remote?: string; url?: string } = {};
  const relay = await startRelay(config, { routes: routes(seen) });
  const port = relay.httpAddr!.port;
  try {
    const put = await rawRequest(
      port,
      "PUT /echo/a?x=1 HTTP/1.1\r\nHost: relay.test\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert.equal(put.status, 200);
    assert.equal(put.body, "PUT /echo/a 5 hello");
    assert.equal(getHeader(put, "x-route"), "echo");
    assert.equal(seen.remote, "127.0.0.1");
    assert.equal(seen.url, "http://relay.test/echo/a?x=1");

    const get = await rawRequest(port, 'GET /echo/b HTTP/1.1\r\nHost: r\r\nContent-Length: 4\r\n\r\n{"a"');
    assert.equal(get.body, 'GET /echo/b 4 {"a"');

    const big = await rawRequest(port, "PUT /echo/c HTTP/1.1\r\nHost: r\r\nContent-Length: 1001\r\n\r\n", {
      expectClose: true,
    });
    assert.equal(big.status, 413);
    assert.equal(big.closed, true);

    assert.equal((await rawRequest(port, "GET /echo/deeper/x HTTP/1.1\r\nHost: r\r\n\r\n")).body, "deeper");

    // One connection: a failing route, then a route, then the relay's own /ping.
    const conn = await dial(port);
    try {
      await writeAllRaw(conn, enc.encode("GET /boom HTTP/1.1\r\nHost: r\r\n\r\n"));
      assert.equal((await readResponse(conn)).status, 500);
      await writeAllRaw(conn, enc.encode("POST /echo/d HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\nok"));
      assert.equal((await readResponse(conn)).body, "POST /echo/d 2 ok");
      await writeAllRaw(conn, enc.encode("GET /ping HTTP/1.1\r\nHost: r\r\n\r\n"));
      assert.equal((await readResponse(conn)).status, 200);
    } finally {
      conn.close();
    }
  } finally {
    await relay.close();
  }
});

Deno.test("relay listener: routes stay off the captive portal unless they ask for it", async () => {
  const core = new RelayCore();
  const listener = new PlainAcceptor(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
    gate: new AdmissionGate({ maxConnections: 100, reserve: 0, maxPerSource: 100, perSecond: 0, burst: 1 }),
    metrics: new AdmissionMetrics(),
    listener: "relay",
  });
  const loop = serveListener(listener, {
    core,
    role: "captive-portal",
    health: { version: "t", gitHash: "t" },
    routes: [
      { prefix: "/relay-only/", maxBodyBytes: 0, handle: () => new Response("no") },
      {
        prefix: "/.well-known/acme-challenge/",
        maxBodyBytes: 0,
        roles: ["captive-portal"],
        handle: () => new Response("tok"),
      },
    ],
  });
  try {
    const port = listener.addr.port;
    assert.equal((await rawRequest(port, "GET /relay-only/x HTTP/1.1\r\nHost: r\r\n\r\n")).status, 404);
    const acme = await rawRequest(port, "GET /.well-known/acme-challenge/abc HTTP/1.1\r\nHost: r\r\n\r\n");
    assert.equal(acme.body, "tok");
  } finally {
    listener.close();
    await loop;
    core.close();
  }
});

Deno.test("edge fetch handler: routes answer before the relay endpoints, with the body limit", async () => {
  const core = new RelayCore();
  const seen: { remote?: string } = {};
  const handle = createFetchHandler(core, { health: { version: "t", gitHash: "t" }, routes: routes(seen) });
  try {
    const ok = await handle(new Request("http://edge.test/echo/z", { method: "PUT", body: "abc" }), {
      remoteAddr: { transport: "tcp", hostname: "192.0.2.7", port: 1 },
    });
    assert.equal(await ok.text(), "PUT /echo/z 3 abc");
    assert.equal(seen.remote, "192.0.2.7");
    const big = await handle(new Request("http://edge.test/echo/z", { method: "PUT", body: "x".repeat(1001) }));
    assert.equal(big.status, 413);
    await big.body?.cancel();
    const boom = await handle(new Request("http://edge.test/boom"));
    assert.equal(boom.status, 500);
    await boom.body?.cancel();
    const ping = await handle(new Request("http://edge.test/ping"));
    assert.equal(ping.status, 200);
    await ping.body?.cancel();
  } finally {
    core.close();
  }
});
