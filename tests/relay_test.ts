/**
 * Behaviour tests over real sockets: the relay started from a config, and
 * the spec-written test client speaking each of the four client kinds.
 *
 * Cases common to both generations live in one list, {@link COMMON}, and
 * run once per kind (derp, ws035, v1, v2), Hono `common.case` style.
 * Generation-specific expectations branch on {@link is035} inside a case.
 */

import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import {
  clientAuth,
  clientInfo,
  type ClientKind,
  connectClient,
  type TestRelayClient,
} from "./support/relay_client.ts";
import {
  exchange,
  is035,
  KINDS,
  messagesBeforePong,
  type RelayScope,
  withRelay,
  withTimeout,
} from "./support/relay_scope.ts";
import { dial, getHeader, rawGet, rawRequest, readResponse, waitForClose, writeAllRaw } from "./support/http_raw.ts";
import { concatBytes, utf8 } from "./support/bytes.ts";
import { keyHex } from "../relay/proto/public_key.ts";
import { encodeWsFrame, WsOpcode } from "../relay/proto/ws_frame.ts";
import { configFromText } from "../config/mod.ts";
import { startRelay } from "../relay/mod.ts";

const HSTS = "max-age=63072000; includeSubDomains";
const CSP =
  "default-src 'none'; frame-ancestors 'none'; form-action 'none'; base-uri 'self'; block-all-mixed-content; plugin-types 'none'";

function newSecret(): Uint8Array {
  return ed25519.utils.randomSecretKey();
}

/** Expects the relay to refuse `c` (connected with `noHandshake`) after authenticating, as each generation does. */
async function expectAccessDenied(c: TestRelayClient): Promise<void> {
  if (is035(c.kind)) {
    await c.sendMsg(clientInfo(c.secretKey));
    assert.deepEqual(await c.next(3000, []), { type: "Health", problem: "not authenticated" });
  } else {
    const ch = await c.next(3000, []);
    assert.equal(ch.type, "ServerChallenge");
    await c.sendMsg(clientAuth(c.secretKey, (ch as { challenge: Uint8Array }).challenge));
    assert.deepEqual(await c.next(3000, []), { type: "ServerDeniesAuth", reason: "not authorized" });
  }
  await withTimeout(c.ended, 3000, `${c.kind} connection closed after the denial`);
}

/** A case run once per client kind. */
interface Case {
  name: string;
  run(kind: ClientKind): Promise<void>;
}

const COMMON: Case[] = [
  {
    name: "two clients exchange packets both ways",
    run: (kind) =>
      withRelay({}, async (s) => {
        const a = await s.connect(kind);
        const b = await s.connect(kind);
        await exchange(a, b);
        await exchange(b, a);
        await exchange(a, a, "to itself");
      }),
  },
  {
    name: "a client Ping gets a Pong with the same data",
    run: (kind) =>
      withRelay({}, async (s) => {
        const a = await s.connect(kind, { ready: false });
        const data = Uint8Array.of(8, 7, 6, 5, 4, 3, 2, 1);
        await a.sendMsg({ type: "Ping", data });
        assert.deepEqual(await a.nextOf("Pong"), { type: "Pong", data });
      }),
  },
  {
    name: "a peer that sent to B leaving gives B PeerGone / EndpointGone",
    run: (kind) =>
      withRelay({}, async (s) => {
        const a = await s.connect(kind);
        const b = await s.connect(kind);
        const c = await s.connect(kind);
        await exchange(a, b);
        a.close();
        const gone = await b.nextOf(is035(kind) ? "PeerGone" : "EndpointGone");
        assert.deepEqual(gone.key, a.publicKey);
        // C never heard from A: it is not told.
        assert.deepEqual(await messagesBeforePong(c), []);
      }),
  },
  {
    name: "a second connection with the same key takes over the datagrams",
    run: (kind) =>
      withRelay({}, async (s) => {
        const secretKey = newSecret();
        const peer = await s.connect(kind);
        const a1 = await s.connect(kind, { secretKey });
        const a2 = await s.connect(kind, { secretKey });
        if (is035(kind)) {
          // 0.35: the newest replaces the old one, which is closed with no frame.
          await withTimeout(a1.ended, 3000, "old connection closed");
          assert.deepEqual(a1.pending.map((m) => m.type).filter((t) => t !== "Pong"), []);
          await exchange(peer, a2);
          await exchange(a2, peer);
          return;
        }
        // 1.x: the old one stays open, inactive, and is told so.
        const inactive = kind === "v2" ? { type: "Status", status: 1 } : {
          type: "Health",
          problem: "Another endpoint connected with the same endpoint id. No more messages will be received.",
        };
        assert.deepEqual(await a1.nextOf(kind === "v2" ? "Status" : "Health"), inactive);
        await exchange(peer, a2);
        assert.deepEqual(await messagesBeforePong(a1), [], "no datagram for the inactive connection");
        await exchange(a1, peer, "inactive can still send");
        a2.close();
        const healthy = kind === "v2"
          ? { type: "Status", status: 0 }
          : { type: "Health", problem: "The connection is healthy and has recovered from previous problems" };
        assert.deepEqual(await a1.nextOf(kind === "v2" ? "Status" : "Health"), healthy);
        await exchange(peer, a1, "re-promoted");
      }),
  },
  {
    name: "allowlist: listed keys relay, others are denied",
    run: (kind) => {
      const [sa, sb] = [newSecret(), newSecret()];
      const ids = [sa, sb].map((k) => `"${keyHex(ed25519.getPublicKey(k))}"`).join(", ");
      return withRelay({ toml: `access.allowlist = [${ids}]` }, async (s) => {
        const a = await s.connect(kind, { secretKey: sa });
        const b = await s.connect(kind, { secretKey: sb });
        await exchange(a, b);
        await expectAccessDenied(await s.connect(kind, { noHandshake: true }));
        await exchange(b, a, "the pair is unaffected");
      });
    },
  },
  {
    name: "denylist: listed keys are denied, others relay",
    run: (kind) => {
      const denied = newSecret();
      return withRelay({ toml: `access.denylist = ["${keyHex(ed25519.getPublicKey(denied))}"]` }, async (s) => {
        await expectAccessDenied(await s.connect(kind, { noHandshake: true, secretKey: denied }));
        const a = await s.connect(kind);
        const b = await s.connect(kind);
        await exchange(a, b);
      });
    },
  },
  {
    name: "http access: the hook is POSTed X-Iroh-NodeId and only a 200 'true' admits",
    run: async (kind) => {
      const allowed = newSecret();
      const allowedHex = keyHex(ed25519.getPublicKey(allowed));
      const seen: { method: string; id: string | null; auth: string | null; body: string }[] = [];
      const hook = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
        const id = req.headers.get("x-iroh-nodeid");
        seen.push({ method: req.method, id, auth: req.headers.get("authorization"), body: await req.text() });
        return new Response(id === allowedHex ? "true" : "false");
      });
      try {
        const url = `http://127.0.0.1:${hook.addr.port}/check`;
        await withRelay({ toml: `access.http = { url = "${url}", bearer_token = "hook-token" }` }, async (s) => {
          const a = await s.connect(kind, { secretKey: allowed });
          const other = await s.connect(kind, { noHandshake: true });
          await expectAccessDenied(other);
          await exchange(a, a, "admitted");
          assert.deepEqual(seen[0], { method: "POST", id: allowedHex, auth: "Bearer hook-token", body: "" });
          assert.equal(seen[1]!.id, keyHex(other.publicKey));
        });
      } finally {
        await hook.shutdown();
      }
    },
  },
  {
    name: "shared_token: Bearer header or ?token= admits, none or a wrong one is denied",
    run: (kind) =>
      withRelay({ toml: 'access.shared_token = ["s3cret", "other"]' }, async (s) => {
        const a = await s.connect(kind, { headers: { Authorization: "Bearer s3cret" } });
        const b = await s.connect(kind, { path: "/relay?token=other" });
        await exchange(a, b);
        await expectAccessDenied(await s.connect(kind, { noHandshake: true }));
        await expectAccessDenied(
          await s.connect(kind, { noHandshake: true, headers: { Authorization: "Bearer nope" } }),
        );
        await expectAccessDenied(await s.connect(kind, { noHandshake: true, path: "/relay?token=s3cre" }));
      }),
  },
  {
    name: "rate limit: at 50 B/s the second 50-byte packet is delayed",
    run: (kind) =>
      withRelay({ toml: "[limits.client.rx]\nbytes_per_second = 50" }, async (s) => {
        const b = await s.connect(kind);
        const a = await s.connect(kind, { ready: false }); // no ping: its bucket is full
        const data = new Uint8Array(50);
        await a.send(b.publicKey, data);
        await a.send(b.publicKey, data);
        await b.recv(5000);
        const t1 = performance.now();
        await b.recv(5000);
        const held = performance.now() - t1;
        assert.ok(held >= 500, `second packet held ${held.toFixed(0)} ms (expected about 1.7 s)`);
        assert.ok(s.relay.core.metrics.c.connsRxRatelimited >= 1);
      }),
  },
  {
    name: "establish timeout: an upgraded client that never authenticates is closed, an established one is not",
    run: (kind) =>
      withRelay({ core: { establishTimeoutMs: 2000 } }, async (s) => {
        const established = await s.connect(kind);
        const silent = await s.connect(kind, { noHandshake: true });
        s.clock.advance(3000);
        await withTimeout(silent.ended, 3000, "silent client closed");
        await established.ping(3000);
      }),
  },
  {
    name: "a silent client is pinged by the server and dropped when it never answers",
    run: (kind) =>
      withRelay({ core: { pingAfterMs: 0 } }, async (s) => {
        const mute = await s.connect(kind);
        const polite = await s.connect(kind);
        s.clock.advance(5000); // past the 1–5 s jitter
        const ping = await mute.next(3000, []);
        assert.equal(ping.type, "Ping");
        assert.equal((ping as { data: Uint8Array }).data.length, 8);
        await polite.ping(3000); // answers the server's ping on the way
        s.clock.advance(5001);
        await withTimeout(mute.ended, 3000, "unanswered ping closes the connection");
        await polite.ping(3000);
      }),
  },
  {
    name: "relay clients full: 1000 sends to a peer that stopped reading never fail on the sender",
    run: (kind) =>
      withRelay({}, async (s) => {
        const a = await s.connect(kind);
        const b = await s.connect(kind);
        b.pause();
        const packet = new Uint8Array(16 * 1024).fill(0x55);
        for (let i = 0; i < 1000; i++) await a.send(b.publicKey, packet);
        await a.ping(5000);
        assert.equal(s.relay.core.metrics.c.sendPacketsRecv, 1000);
        const c = await s.connect(kind);
        await exchange(a, c, "sender keeps working");
        await exchange(c, a);
      }),
  },
  {
    name: "garbage after the upgrade closes only that connection",
    run: (kind) =>
      withRelay({}, async (s) => {
        const [c, d] = [await s.connect(kind), await s.connect(kind)];
        const bad = await s.connect(kind);
        await bad.writeRaw(utf8("this is not a relay frame\r\n\r\n"));
        await withTimeout(bad.ended, 3000, "garbage closes the connection");
        await exchange(c, d);
        await exchange(d, c);
      }),
  },
  {
    name: "a frame announcing more than 1 MiB closes only that connection",
    run: (kind) =>
      withRelay({}, async (s) => {
        const [c, d] = [await s.connect(kind), await s.connect(kind)];
        const bad = await s.connect(kind);
        if (kind === "derp") {
          await bad.writeRaw(Uint8Array.of(4, 0x00, 0x10, 0x00, 0x01));
        } else {
          // Masked binary frame with a 64-bit length of 1 MiB + 1; no payload needed.
          await bad.writeRaw(Uint8Array.of(0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 1, 1, 2, 3, 4));
        }
        await withTimeout(bad.ended, 3000, "oversized frame closes the connection");
        await exchange(c, d);
      }),
  },
  {
    name: "an unknown frame type closes only that connection",
    run: (kind) =>
      withRelay({}, async (s) => {
        const [c, d] = [await s.connect(kind), await s.connect(kind)];
        const bad = await s.connect(kind);
        const body = is035(kind) ? Uint8Array.of(0x63, 1, 2) : Uint8Array.of(0x30, 1, 2);
        await bad.writeRaw(kind === "derp" ? Uint8Array.of(0x63, 0, 0, 0, 2, 1, 2) : bad.wsFrame(body));
        await withTimeout(bad.ended, 3000, "unknown type closes the connection");
        await exchange(c, d);
      }),
  },
  {
    name: "a malformed known frame (Ping of 7 bytes) closes only that connection",
    run: (kind) =>
      withRelay({}, async (s) => {
        const [c, d] = [await s.connect(kind), await s.connect(kind)];
        const bad = await s.connect(kind);
        const type = is035(kind) ? 12 : 9;
        const body = concatBytes(Uint8Array.of(type), new Uint8Array(7));
        await bad.writeRaw(kind === "derp" ? Uint8Array.of(12, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0) : bad.wsFrame(body));
        await withTimeout(bad.ended, 3000, "malformed frame closes the connection");
        await exchange(c, d);
      }),
  },
  {
    name: "the largest packet crosses, and one byte more is refused",
    run: (kind) =>
      withRelay({}, async (s) => {
        const a = await s.connect(kind);
        const b = await s.connect(kind);
        // 0.35: a 64 KiB packet. 1.x: 65535 bytes after the type (the R2C frame is then exactly 64 KiB).
        const max = is035(kind) ? 65536 : 65535 - 33;
        const packet = new Uint8Array(max).map((_, i) => i & 0xff);
        await a.send(b.publicKey, packet);
        const got = await b.recv(5000);
        assert.deepEqual(got.data, packet);
        await a.send(b.publicKey, new Uint8Array(max + 1));
        if (is035(kind)) {
          await withTimeout(a.ended, 3000, "0.35: a packet over 64 KiB is a decode error");
        } else {
          // 1.x: dropped at ingress, the sender stays.
          await a.ping(3000);
          assert.deepEqual(await messagesBeforePong(b), []);
        }
        await exchange(b, b, "receiver unaffected");
      }),
  },
  {
    name: "the /derp legacy path upgrades too",
    run: (kind) =>
      withRelay({}, async (s) => {
        const a = await s.connect(kind, { path: "/derp" });
        assert.equal(a.response.status, 101);
        const b = await s.connect(kind);
        await exchange(a, b);
        await exchange(b, a);
      }),
  },
];

for (const c of COMMON) {
  for (const kind of KINDS) {
    Deno.test(`relay (${kind}): ${c.name}`, () => c.run(kind));
  }
}

const WS_KINDS = KINDS.filter((k) => k !== "derp");

for (const kind of WS_KINDS) {
  Deno.test(`relay (${kind}): an unmasked WebSocket frame closes only that connection`, () =>
    withRelay({}, async (s) => {
      const [c, d] = [await s.connect(kind), await s.connect(kind)];
      const bad = await s.connect(kind);
      await bad.writeRaw(
        encodeWsFrame(WsOpcode.Binary, concatBytes(Uint8Array.of(is035(kind) ? 12 : 9), new Uint8Array(8))),
      );
      await withTimeout(bad.ended, 3000, "unmasked frame closes the connection");
      assert.match(bad.endReason ?? "", /websocket close 1002|eof/);
      await exchange(c, d);
    }));

  Deno.test(`relay (${kind}): a text WebSocket message is ignored`, () =>
    withRelay({}, async (s) => {
      const a = await s.connect(kind);
      await a.writeRaw(a.wsFrame(utf8("hello?"), WsOpcode.Text));
      await a.ping(3000);
      const b = await s.connect(kind);
      await exchange(a, b);
      assert.equal(a.closed, false);
    }));

  Deno.test(`relay (${kind}): WebSocket ping is answered with pong, and a fragmented message is reassembled`, () =>
    withRelay({}, async (s) => {
      const a = await s.connect(kind);
      const b = await s.connect(kind);
      await a.writeRaw(a.wsFrame(utf8("wsping"), WsOpcode.Ping));
      // A Ping relay frame split in two WebSocket fragments.
      const body = concatBytes(Uint8Array.of(is035(kind) ? 12 : 9), new Uint8Array(8).fill(3));
      const first = a.wsFrame(body.subarray(0, 4), WsOpcode.Binary);
      first[0] = first[0]! & 0x7f; // FIN clear
      await a.writeRaw(concatBytes(first, a.wsFrame(body.subarray(4), WsOpcode.Continuation)));
      assert.deepEqual(await a.nextOf("Pong"), { type: "Pong", data: new Uint8Array(8).fill(3) });
      // The WebSocket pong was written before the relay Pong.
      assert.deepEqual(a.wsPongs, [utf8("wsping")]);
      await exchange(a, b);
    }));

  Deno.test(`relay (${kind}): a WebSocket close frame ends the connection`, () =>
    withRelay({}, async (s) => {
      const a = await s.connect(kind);
      await a.writeRaw(a.wsFrame(Uint8Array.of(0x03, 0xe8), WsOpcode.Close));
      await withTimeout(a.ended, 3000, "connection closed after the close handshake");
      assert.match(a.endReason ?? "", /websocket close 1000|eof/);
    }));
}

Deno.test("relay: every client kind exchanges packets with every other (test_relay_clients_websocket_and_relay)", () =>
  withRelay({}, async (s) => {
    const clients = [];
    for (const kind of KINDS) clients.push(await s.connect(kind));
    for (const a of clients) for (const b of clients) if (a !== b) await exchange(a, b);
  }));

Deno.test("relay: a derp client sending Health is closed (only servers send Health)", () =>
  withRelay({}, async (s) => {
    const a = await s.connect("derp");
    await a.sendMsg({ type: "Health", problem: "hi" });
    await withTimeout(a.ended, 3000, "closed");
  }));

Deno.test("relay: a half-sent request is closed at the establish timeout (test_establish_timeout)", () =>
  withRelay({ core: { establishTimeoutMs: 2000 } }, async (s) => {
    const established = await s.connect("v2");
    const conn = s.own(await dial(s.port));
    await writeAllRaw(conn, utf8("GET /relay HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"));
    s.clock.advance(1000);
    assert.equal(await waitForClose(conn, 100), false, "still open before the deadline");
    s.clock.advance(1500);
    assert.equal(await waitForClose(conn, 3000), true, "closed after the deadline");
    s.clock.advance(1000);
    await established.ping(3000);
  }));

Deno.test("relay: the establish timeout also runs on the real clock", async () => {
  const { config } = configFromText('http_bind_addr = "127.0.0.1:0"\nenable_metrics = false', "t");
  const relay = await startRelay(config, { core: { establishTimeoutMs: 300, tickMs: 50 } });
  const conn = await dial(relay.httpAddr!.port);
  try {
    await writeAllRaw(conn, utf8("GET / HTTP/1.1\r\n"));
    const t0 = performance.now();
    assert.equal(await waitForClose(conn, 5000), true);
    assert.ok(performance.now() - t0 >= 200, "not before the timeout");
  } finally {
    conn.close();
    await relay.close();
  }
});

Deno.test("relay: upgrade responses carry the headers each client checks", () =>
  withRelay({}, async (s) => {
    const derp = await s.connect("derp");
    assert.equal(derp.response.status, 101);
    assert.equal(derp.response.headers.get("upgrade"), "iroh derp http");
    const ws = await s.connect("ws035");
    assert.equal(ws.response.headers.get("upgrade"), "websocket");
    assert.equal(ws.response.headers.get("connection")?.toLowerCase(), "upgrade");
    assert.equal(ws.response.headers.get("sec-websocket-protocol"), undefined);
    const v1 = await s.connect("v1");
    assert.equal(v1.response.headers.get("sec-websocket-protocol"), "iroh-relay-v1");
    const v2 = await s.connect("v2");
    assert.equal(v2.response.headers.get("sec-websocket-protocol"), "iroh-relay-v2");
    for (const c of [derp, ws, v1, v2]) {
      assert.equal(c.response.headers.get("strict-transport-security"), HSTS, c.kind);
      assert.equal(c.response.headers.get("content-security-policy"), CSP, c.kind);
    }
  }));

Deno.test("relay: Sec-WebSocket-Accept is SHA-1 of the key and the RFC 6455 GUID", () =>
  withRelay({}, async (s) => {
    const r = await rawRequest(
      s.port,
      "GET /relay HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
        "Sec-WebSocket-Protocol: iroh-relay-v2\r\n\r\n",
    );
    assert.equal(r.status, 101);
    assert.equal(getHeader(r, "sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  }));

Deno.test("relay: subprotocol negotiation picks iroh-relay-v2 (test_subprotocol_negotiation_picks_latest)", () =>
  withRelay({}, async (s) => {
    for (
      const protocols of [
        "iroh-relay-v2,iroh-relay-v1",
        "iroh-relay-v1,iroh-relay-v2",
        "baz, iroh-relay-v1, iroh-relay-v2, boo",
        "foo, iroh-relay-v2, bar",
      ]
    ) {
      const c = await s.connect("v2", { protocols });
      assert.equal(c.response.headers.get("sec-websocket-protocol"), "iroh-relay-v2", protocols);
      c.close();
    }
  }));

Deno.test("regression: a refused upgrade gets 400 and the server closes the connection", async (t) => {
  await withRelay({}, async (s) => {
    const ws = (extra: string) =>
      `GET /relay HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${extra}\r\n`;
    const cases: { name: string; req: string; check?: (r: Awaited<ReturnType<typeof rawRequest>>) => void }[] = [
      { name: "no Upgrade header", req: "GET /relay HTTP/1.1\r\nHost: h\r\n\r\n" },
      { name: "Upgrade: h2c", req: "GET /relay HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n" },
      {
        name: "wrong WebSocket version",
        req: ws("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"),
        check: (r) => assert.equal(getHeader(r, "sec-websocket-version"), "13"),
      },
      { name: "missing Sec-WebSocket-Key", req: ws("Sec-WebSocket-Version: 13\r\n") },
      {
        name: "only unknown subprotocols",
        req: ws(
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: foo, bar\r\n",
        ),
        check: (r) => assert.match(r.body, /we support iroh-relay-v2, iroh-relay-v1 but you only provide foo, bar/),
      },
      {
        name: "malformed x-iroh-relay-client-auth-v1",
        req: ws(
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: iroh-relay-v2\r\nx-iroh-relay-client-auth-v1: !!\r\n",
        ),
      },
    ];
    for (const c of cases) {
      await t.step(c.name, async () => {
        const r = await rawRequest(s.port, c.req, { expectClose: true });
        assert.equal(r.status, 400);
        assert.equal(getHeader(r, "strict-transport-security"), HSTS);
        c.check?.(r);
        assert.equal(r.closed, true, "the server closes the connection after refusing the upgrade");
      });
    }
  });
});

Deno.test("relay: HTTP endpoints on the relay port (test_root_handler, /robots.txt, /ping, /healthz, 404)", () =>
  withRelay({}, async (s) => {
    const root = await rawGet(s.port, "/");
    assert.equal(root.status, 200);
    assert.match(root.body, /iroh\.computer/);
    assert.equal(getHeader(root, "content-type"), "text/html; charset=utf-8");
    assert.equal((await rawGet(s.port, "/index.html")).status, 200);
    const robots = await rawGet(s.port, "/robots.txt");
    assert.equal(robots.status, 200);
    assert.equal(robots.body, "User-agent: *\nDisallow: /\n");
    const ping = await rawGet(s.port, "/ping");
    assert.equal(ping.status, 200);
    assert.equal(getHeader(ping, "access-control-allow-origin"), "*");
    assert.equal(ping.body, "");
    const health = await rawGet(s.port, "/healthz");
    assert.equal(health.status, 200);
    assert.equal(getHeader(health, "content-type"), "application/json");
    assert.equal(JSON.parse(health.body).status, "ok");
    const missing = await rawGet(s.port, "/nope");
    assert.equal(missing.status, 404);
    assert.equal(missing.body, "Not Found");
    const post = await rawRequest(
      s.port,
      `POST /ping HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc`,
    );
    assert.equal(post.status, 404);
    for (const r of [root, robots, ping, health, missing, post]) {
      assert.equal(getHeader(r, "strict-transport-security"), HSTS);
      assert.equal(getHeader(r, "content-security-policy"), CSP);
    }
  }));

Deno.test("relay: /ping ignores the Host header (0.35 keeps the trailing dot) and serves keep-alive requests", () =>
  withRelay({}, async (s) => {
    const conn = s.own(await dial(s.port));
    await writeAllRaw(
      conn,
      utf8("GET /ping HTTP/1.1\r\nHost: relay.example.org.:3340\r\n\r\nGET /generate_204 HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    const first = await readResponse(conn);
    assert.equal(first.status, 200);
    const second = await readResponse(conn);
    assert.equal(second.status, 204);
    await writeAllRaw(conn, utf8("GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.equal((await readResponse(conn)).status, 200);
  }));

Deno.test("relay: /generate_204 echoes valid X-Iroh-Challenge and X-Tailscale-Challenge values only (test_captive_portal_service)", () =>
  withRelay({}, async (s) => {
    const r = await rawGet(s.port, "/generate_204", ["X-Iroh-Challenge: ts_relay.example.org"]);
    assert.equal(r.status, 204);
    assert.equal(r.body, "");
    assert.equal(getHeader(r, "x-iroh-response"), "response ts_relay.example.org");
    const t = await rawGet(s.port, "/generate_204", ["X-Tailscale-Challenge: abc-123"]);
    assert.equal(getHeader(t, "x-tailscale-response"), "response abc-123");
    for (const bad of ["a b", "<x>", "x".repeat(64), "a/b"]) {
      const b = await rawGet(s.port, "/generate_204", [`X-Iroh-Challenge: ${bad}`, `X-Tailscale-Challenge: ${bad}`]);
      assert.equal(b.status, 204);
      assert.equal(getHeader(b, "x-iroh-response"), undefined, bad);
      assert.equal(getHeader(b, "x-tailscale-response"), undefined, bad);
    }
  }));

Deno.test("relay: a ClientInfo pipelined before the 101 is accepted (upstream 0.35 aborts; we are lenient)", () =>
  withRelay({}, async (s) => {
    const peer = await s.connect("derp");
    const secret = ed25519.utils.randomSecretKey();
    const conn = s.own(await dial(s.port));
    const info = clientInfo(secret) as { key: Uint8Array; signature: Uint8Array; message: Uint8Array };
    const derpFrame = (type: number, payload: Uint8Array) => {
      const h = new Uint8Array(5);
      h[0] = type;
      new DataView(h.buffer).setUint32(1, payload.length);
      return concatBytes(h, payload);
    };
    await writeAllRaw(
      conn,
      concatBytes(
        utf8("GET /relay HTTP/1.1\r\nHost: h\r\nUpgrade: iroh derp http\r\n\r\n"),
        derpFrame(2, concatBytes(utf8("RELAY🔑"), info.key, info.signature, info.message)),
        derpFrame(4, concatBytes(peer.publicKey, utf8("early"))),
      ),
    );
    const got = await peer.recv(3000);
    assert.deepEqual(got.src, info.key);
    assert.equal(new TextDecoder().decode(got.data), "early");
  }));

Deno.test("relay: a keep-alive connection can upgrade after a plain request", () =>
  withRelay({}, async (s) => {
    const conn = s.own(await dial(s.port));
    await writeAllRaw(conn, utf8("GET /ping HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert.equal((await readResponse(conn)).status, 200);
    await writeAllRaw(conn, utf8("GET /relay HTTP/1.1\r\nHost: h\r\nUpgrade: iroh derp http\r\n\r\n"));
    const r = await readResponse(conn);
    assert.equal(r.status, 101);
    assert.equal(getHeader(r, "upgrade"), "iroh derp http");
  }));

Deno.test("relay: a request head over 16 KiB gets 431 and a malformed one 400", () =>
  withRelay({}, async (s) => {
    const big = await rawRequest(s.port, `GET / HTTP/1.1\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`, {
      expectClose: true,
    });
    assert.equal(big.status, 431);
    assert.equal(big.closed, true);
    const bad = await rawRequest(s.port, "NOT HTTP AT ALL\r\n\r\n", { expectClose: true });
    assert.equal(bad.status, 400);
    assert.equal(bad.closed, true);
  }));

Deno.test("regression: RelayService.close() also closes connections that have not upgraded", async () => {
  const { config } = configFromText('http_bind_addr = "127.0.0.1:0"\nenable_metrics = false', "t");
  const relay = await startRelay(config);
  const port = relay.httpAddr!.port;
  const idle = await dial(port);
  const keepAlive = await dial(port);
  try {
    await writeAllRaw(idle, utf8("GET /relay HTTP/1.1\r\n"));
    await writeAllRaw(keepAlive, utf8("GET /ping HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert.equal((await readResponse(keepAlive)).status, 200);
    await relay.close();
    assert.equal(await waitForClose(idle, 2000), true, "half-sent request closed");
    assert.equal(await waitForClose(keepAlive, 2000), true, "idle keep-alive connection closed");
  } finally {
    idle.close();
    keepAlive.close();
  }
});

Deno.test("relay: metrics listener serves OpenMetrics text (when asked) with upstream counter names and clients per generation", () =>
  withRelay({ metrics: true }, async (s) => {
    const d = await s.connect("derp");
    const v = await s.connect("v2");
    await exchange(d, v);
    await exchange(v, d);
    // As Prometheus asks; without this header the Prometheus text format is served (tests/monitoring_test.ts).
    const r = await rawGet(s.relay.metricsAddr!.port, "/metrics", [
      "Accept: application/openmetrics-text; version=1.0.0",
    ]);
    assert.equal(r.status, 200);
    assert.equal(getHeader(r, "content-type"), "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert.ok(r.body.endsWith("# EOF\n"), "ends with # EOF");
    for (
      const name of [
        "bytes_sent",
        "bytes_recv",
        "send_packets_sent",
        "send_packets_recv",
        "send_packets_dropped",
        "other_packets_sent",
        "other_packets_recv",
        "other_packets_dropped",
        "got_ping",
        "sent_pong",
        "unknown_frames",
        "conns_rx_ratelimited",
        "accepts",
        "disconnects",
        "unique_client_keys",
        "websocket_accepts",
        "relay_accepts",
        "bytes_rx_ratelimited",
        "clients_inactive_added",
        "clients_inactive_removed",
        "http_connections",
        "http_connections_closed",
        "http_connections_errored",
      ]
    ) {
      assert.match(r.body, new RegExp(`^# TYPE relayserver_${name} counter$`, "m"), name);
      assert.match(r.body, new RegExp(`^relayserver_${name}_total \\d+$`, "m"), name);
    }
    assert.match(r.body, /^relayserver_clients\{generation="0\.35"\} 1$/m);
    assert.match(r.body, /^relayserver_clients\{generation="1\.x"\} 1$/m);
    assert.match(r.body, /^relayserver_send_packets_sent_total 2$/m);
    assert.match(r.body, /^relayserver_accepts_total 2$/m);
    // Any path works.
    assert.equal((await rawGet(s.relay.metricsAddr!.port, "/")).status, 200);
  }));

Deno.test("relay: metrics and relay on one port is refused at start (test_conflicting_bind)", async () => {
  const { config } = configFromText('http_bind_addr = "127.0.0.1:39123"\nmetrics_bind_addr = "127.0.0.1:39123"', "t");
  await assert.rejects(() => startRelay(config), /metrics_bind_addr 127\.0\.0\.1:39123 conflicts/);
});

Deno.test("relay: enable_relay = false opens no relay listener", async () => {
  const { config } = configFromText('enable_relay = false\nmetrics_bind_addr = "127.0.0.1:0"', "t");
  const relay = await startRelay(config);
  try {
    assert.equal(relay.httpAddr, undefined);
    assert.ok(relay.metricsAddr);
  } finally {
    await relay.close();
  }
});

Deno.test("relay: over TLS every kind relays, and the plain port serves only the captive portal (test_https_clients_and_server)", async () => {
  const dir = new URL("./fixtures/", import.meta.url);
  const certPath = new URL("localhost.crt", dir).pathname;
  const keyPath = new URL("localhost.key", dir).pathname;
  const cert = await Deno.readTextFile(certPath);
  const toml = `[tls]
cert_mode = "Manual"
manual_cert_path = "${certPath}"
manual_key_path = "${keyPath}"
https_bind_addr = "127.0.0.1:0"
`;
  await withRelay({ toml }, async (s: RelayScope) => {
    const https = s.relay.httpsAddr!.port;
    const tls = { tlsHostname: "localhost", caCerts: [cert], port: https };
    const clients = [];
    for (const kind of KINDS) clients.push(await s.connect(kind, tls));
    for (const a of clients) for (const b of clients) if (a !== b) await exchange(a, b);
    const ping = await rawGet(https, "/ping", [], { tls: { caCerts: [cert], serverName: "localhost" } });
    assert.equal(ping.status, 200);
    assert.equal(getHeader(ping, "strict-transport-security"), HSTS);
    const portal = await rawGet(s.port, "/generate_204", ["X-Iroh-Challenge: c1"]);
    assert.equal(portal.status, 204);
    assert.equal(getHeader(portal, "x-iroh-response"), "response c1");
    assert.equal(getHeader(portal, "strict-transport-security"), undefined, "the captive portal adds no HSTS");
    for (const path of ["/relay", "/ping", "/", "/healthz"]) {
      const r = await rawGet(s.port, path, ["Upgrade: iroh derp http"]);
      assert.equal(r.status, 404, path);
      assert.equal(r.body, "Not Found");
    }
    await assert.rejects(() => connectClient(s.port, "derp"), /Upgrade refused: 404/);
    // Plain bytes on the TLS port fail that connection only.
    const plain = s.own(await dial(https));
    await writeAllRaw(plain, utf8("GET /ping HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert.equal(await waitForClose(plain, 3000), true);
    const late = await s.connect("v2", tls);
    await exchange(late, clients[0]!);
  });
});

Deno.test("relay forwards a burst of derp frames to interleaved peers in order, whole and from the right source", async () => {
  // One write carrying many SendPackets: the relay reads them in one chunk and forwards runs
  // of consecutive frames to the same peer in one piece, so this checks the run path's
  // bookkeeping: order per peer, contents, source key, counters, and a Ping in the middle.
  await withRelay({}, async (s) => {
    const a = await s.connect("derp");
    const b = await s.connect("derp");
    const c = await s.connect("ws035");
    const plan: [TestRelayClient, string][] = [];
    for (let i = 0; i < 120; i++) plan.push([i % 10 < 7 ? b : c, `m${i}-${"x".repeat(i * 7)}`]);
    const frames: Uint8Array[] = [];
    plan.forEach(([dst, text], i) => {
      frames.push(a.frame({ type: "SendPacket", dstKey: dst.publicKey, packet: utf8(text) }));
      if (i === 60) frames.push(a.frame({ type: "Ping", data: new Uint8Array(8).fill(3) }));
    });
    const before = s.relay.core.metrics.c.sendPacketsRecv;
    await a.writeRaw(concatBytes(...frames));
    for (const peer of [b, c]) {
      const expected = plan.filter(([d]) => d === peer).map(([, t]) => t);
      for (const text of expected) {
        const got = await peer.recv();
        assert.equal(new TextDecoder().decode(got.data), text);
        assert.deepEqual(got.src, a.publicKey);
      }
    }
    const pong = await a.nextOf("Pong");
    assert.deepEqual(pong.data, new Uint8Array(8).fill(3));
    assert.equal(s.relay.core.metrics.c.sendPacketsRecv - before, 120);
    assert.equal(s.relay.core.metrics.c.sendPacketsDropped, 0);
  });
});
