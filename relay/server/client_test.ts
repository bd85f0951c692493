import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import { PONG_TIMEOUT_MS } from "./client.ts";
import { QUEUE_DEPTH, WRITE_TIMEOUT_MS } from "./client_writer.ts";
import { CLIENT_INFO_TIMEOUT_MS } from "../proto/handshake.ts";
import { DERP, type Generation, V1, V2 } from "../proto/generation.ts";
import { keyHex } from "../proto/public_key.ts";
import type { RelayCore, RelayOptions } from "./relay_core.ts";
import { clientAuth, clientInfo } from "../../tests/support/relay_client.ts";
import { concatBytes, K, utf8 } from "../../tests/support/bytes.ts";
import { createLogger, suppressedLogLines } from "../../log/mod.ts";
import {
  datagramsOf,
  datagramTo,
  FakeClock,
  type MemConn,
  memConnect,
  memCore,
  memOpen,
} from "../../tests/support/mem_relay.ts";

const GENS: [string, Generation][] = [["derp", DERP], ["v1", V1], ["v2", V2]];

async function withCore(
  opts: RelayOptions,
  fn: (core: RelayCore, clock: FakeClock) => Promise<void>,
): Promise<void> {
  const clock = new FakeClock();
  const core = memCore(clock, opts);
  try {
    await fn(core, clock);
  } finally {
    core.close();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise((r) => setTimeout(r, 0));
}

/** Waits until the sweeper (5 ms period in tests) has run at least twice. */
async function sweep(): Promise<void> {
  await new Promise((r) => setTimeout(r, 30));
}

/** Polls `pred` until it holds (the sweeper may run late on a busy machine); fails after 2 s. */
async function eventually(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!pred()) {
    if (Date.now() > deadline) assert.fail(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

for (const [name, gen] of GENS) {
  Deno.test(`Client answers a ${name} Ping with a Pong carrying the same 8 bytes (test_client_actor_basic)`, async () => {
    await withCore({}, async (core) => {
      const a = await memConnect(core, gen);
      const data = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
      await a.feed({ type: "Ping", data });
      const pong = await a.out.nth("Pong");
      assert.deepEqual(pong.data, data);
      assert.equal(core.metrics.c.gotPing, 1);
      assert.equal(core.metrics.c.sentPong, 1);
    });
  });

  Deno.test(`Client writes a Pong before datagrams queued earlier (control priority, ${name})`, async () => {
    await withCore({}, async (core) => {
      const a = await memConnect(core, gen);
      const b = await memConnect(core, gen);
      await settle();
      const before = b.out.batches.length;
      // All routed in one synchronous run, as one read chunk would be.
      for (let i = 0; i < 3; i++) void a.feed(datagramTo(a, b.key, utf8(`d${i}`)));
      void b.feed({ type: "Ping", data: new Uint8Array(8).fill(9) });
      await b.out.until(() => b.out.batches.length > before, "a batch");
      assert.deepEqual(b.out.batches[before]!.map((m) => m.type)[0], "Pong");
      assert.equal(b.out.batches[before]!.length, 4, "one write for the pong and the three datagrams");
    });
  });

  Deno.test(`Client tail-drops datagrams for a ${name} receiver that stopped reading; the sender is unaffected`, async () => {
    await withCore({}, async (core, clock) => {
      const a = await memConnect(core, gen);
      const b = await memConnect(core, gen);
      await settle();
      b.out.stalled = true;
      for (let i = 0; i < 1000; i++) void a.feed(datagramTo(a, b.key, utf8(`p${i}`)));
      assert.equal(core.metrics.c.sendPacketsRecv, 1000);
      assert.equal(core.metrics.c.sendPacketsDropped, 1000 - QUEUE_DEPTH, "everything past the queue depth is dropped");
      await a.feed({ type: "Ping", data: new Uint8Array(8) });
      await a.out.nth("Pong");
      // The stuck write hits the write timeout: only the receiver is closed.
      clock.advance(WRITE_TIMEOUT_MS + 1);
      await eventually(() => b.client.closed, "b closed");
      assert.equal(a.client.closed, false);
      await a.feed({ type: "Ping", data: new Uint8Array(8).fill(1) });
      await a.out.nth("Pong", 2);
    });
  });

  Deno.test(`Client pings a silent ${name} client and closes it when no Pong comes`, async () => {
    await withCore({ pingAfterMs: 0 }, async (core, clock) => {
      const a = await memConnect(core, gen);
      const b = await memConnect(core, gen);
      clock.advance(5_000); // past 0 + the 1–5 s jitter
      const pingA = await a.out.nth("Ping");
      const pingB = await b.out.nth("Ping");
      assert.equal(pingA.data.length, 8);
      await a.feed({ type: "Pong", data: pingA.data });
      void pingB; // B never answers
      clock.advance(PONG_TIMEOUT_MS + 1);
      await eventually(() => b.client.closed, "no pong: closed");
      assert.equal(a.client.closed, false, "answered: kept");
    });
  });

  Deno.test(`Client closes a ${name} connection that has not authenticated by the establish timeout`, async () => {
    await withCore({ establishTimeoutMs: 2000 }, async (core, clock) => {
      const idle = memOpen(core, gen);
      const done = await memConnect(core, gen);
      clock.advance(1000);
      await sweep();
      assert.equal(idle.client.closed, false);
      clock.advance(1500);
      await eventually(() => idle.client.closed, "idle closed");
      assert.equal(done.client.closed, false, "registered clients are not subject to it");
    });
  });

  Deno.test(`Client closes a ${name} client whose first frame is not the auth frame, without a reply`, async () => {
    await withCore({}, async (core) => {
      const a = memOpen(core, gen);
      await a.feed({ type: "Ping", data: new Uint8Array(8) });
      assert.equal(a.client.closed, true);
      assert.equal(a.out.ofType("Pong").length, 0);
      assert.equal(core.connectedKeys, 0);
    });
  });
}

Deno.test("Client gives a 0.35 client 10 s for ClientInfo even when the establish timeout is longer", async () => {
  await withCore({ establishTimeoutMs: 30_000 }, async (core, clock) => {
    const idle = memOpen(core, DERP);
    const v2 = memOpen(core, V2);
    clock.advance(CLIENT_INFO_TIMEOUT_MS + 1);
    await eventually(() => idle.client.closed, "idle closed");
    assert.equal(v2.client.closed, false);
  });
});

Deno.test("Client shortens the 1.x pong wait to clamp(3 × RTT, 500 ms, 5 s) once an RTT is known", async () => {
  await withCore({ pingAfterMs: 0 }, async (core, clock) => {
    const a = await memConnect(core, V2);
    const d = await memConnect(core, DERP);
    clock.advance(5_000);
    await a.feed({ type: "Pong", data: (await a.out.nth("Ping")).data });
    await d.feed({ type: "Pong", data: (await d.out.nth("Ping")).data });
    clock.advance(5_000);
    await a.out.nth("Ping", 2);
    await d.out.nth("Ping", 2);
    clock.advance(400);
    await sweep();
    assert.equal(a.client.closed, false, "1.x: never less than 500 ms");
    // At 4.7 s: past 3 × RTT unless the machine stalled for over 1.5 s, and 300 ms short of 0.35's 5 s.
    clock.advance(4_300);
    await eventually(() => a.client.closed, "1.x: the wait follows the measured RTT, below 5 s");
    assert.equal(d.client.closed, false, "0.35: always 5 s");
  });
});

Deno.test("Client ignores a Pong that does not match the outstanding ping", async () => {
  await withCore({ pingAfterMs: 0 }, async (core, clock) => {
    const a = await memConnect(core, V2);
    clock.advance(5_000);
    const ping = await a.out.nth("Ping");
    const wrong = ping.data.slice();
    wrong[0] = wrong[0]! ^ 1;
    await a.feed({ type: "Pong", data: wrong });
    // A frame was received, but the ping is still unanswered.
    clock.advance(PONG_TIMEOUT_MS + 1);
    await eventually(() => a.client.closed, "a closed");
  });
});

Deno.test("Client forwards a 1.x batch with its ECN and segment size, and a 0.35 receiver gets the contents", async () => {
  await withCore({}, async (core) => {
    const a = await memConnect(core, V2);
    const b = await memConnect(core, V1);
    const d = await memConnect(core, DERP);
    const contents = utf8("Hello World!");
    await a.feed({ type: "ClientToRelayDatagramBatch", dstKey: b.key, ecn: 3, segmentSize: 6, contents });
    await a.feed({ type: "ClientToRelayDatagramBatch", dstKey: d.key, ecn: 2, segmentSize: 6, contents });
    const got = await b.out.nth("RelayToClientDatagramBatch");
    assert.deepEqual(got, { type: "RelayToClientDatagramBatch", srcKey: a.key, ecn: 3, segmentSize: 6, contents });
    assert.deepEqual(await d.out.nth("RecvPacket"), { type: "RecvPacket", srcKey: a.key, packet: contents });
  });
});

Deno.test("Client drops, without closing the sender, 1.x datagrams that are empty or too large to forward", async () => {
  await withCore({}, async (core) => {
    const a = await memConnect(core, V2);
    const b = await memConnect(core, V2);
    await a.feed(datagramTo(a, b.key, new Uint8Array(0)));
    // 65536 bytes after the type would make a 65537-byte R2C frame.
    await a.feed(datagramTo(a, b.key, new Uint8Array(65536 - 33)));
    await settle();
    assert.equal(datagramsOf(b).length, 0);
    assert.equal(core.metrics.c.sendPacketsDropped, 2);
    assert.equal(a.client.closed, false);
    // 65535 bytes after the type fits exactly.
    await a.feed(datagramTo(a, b.key, new Uint8Array(65535 - 33)));
    await b.out.until(() => datagramsOf(b).length === 1, "the largest datagram");
  });
});

Deno.test("Client closes a 1.x connection sending a frame other than 4, 5, 9, 10 after the handshake", async (t) => {
  const frames: [string, Uint8Array][] = [
    ["ClientAuth again", new Uint8Array(0)],
    ["ServerChallenge", concatBytes(Uint8Array.of(0), new Uint8Array(16))],
    ["EndpointGone", concatBytes(Uint8Array.of(8), K)],
    ["RelayToClientDatagram", concatBytes(Uint8Array.of(6), K, Uint8Array.of(0, 1))],
    ["Status", Uint8Array.of(13, 0)],
    ["Restarting", concatBytes(Uint8Array.of(12), new Uint8Array(8))],
    ["unknown type 40", Uint8Array.of(40)],
    ["Ping of 7 bytes", concatBytes(Uint8Array.of(9), new Uint8Array(7))],
  ];
  for (const [name, body] of frames) {
    await t.step(name, async () => {
      await withCore({}, async (core) => {
        const a = await memConnect(core, V2);
        const b = name === "ClientAuth again"
          ? (() => {
            const auth = clientAuth(a.secret, new Uint8Array(16));
            return concatBytes(
              Uint8Array.of(1),
              (auth as { publicKey: Uint8Array }).publicKey,
              Uint8Array.of(64),
              (auth as { signature: Uint8Array }).signature,
            );
          })()
          : body;
        await a.feedBody(b);
        assert.equal(a.client.closed, true);
        assert.equal(core.connectedKeys, 0);
      });
    });
  }
});

Deno.test("Client ignores known 0.35 frames it does not handle, and closes on Health or malformed ones", async (t) => {
  const cases: { name: string; body: Uint8Array; closes: boolean }[] = [
    { name: "NotePreferred", body: Uint8Array.of(7, 1), closes: false },
    { name: "KeepAlive", body: Uint8Array.of(6), closes: false },
    { name: "ClientInfo again", body: new Uint8Array(0), closes: false },
    { name: "Health from a client", body: concatBytes(Uint8Array.of(14), utf8("hi")), closes: true },
    { name: "unknown type 99", body: Uint8Array.of(99), closes: true },
    { name: "Ping of 9 bytes", body: concatBytes(Uint8Array.of(12), new Uint8Array(9)), closes: true },
    { name: "NotePreferred 2", body: Uint8Array.of(7, 2), closes: true },
    { name: "SendPacket over 64 KiB", body: concatBytes(Uint8Array.of(4), K, new Uint8Array(65537)), closes: true },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      await withCore({}, async (core) => {
        const a = await memConnect(core, DERP);
        const body = c.name === "ClientInfo again"
          ? (() => {
            const info = clientInfo(a.secret) as { key: Uint8Array; signature: Uint8Array; message: Uint8Array };
            return concatBytes(Uint8Array.of(2), utf8("RELAY🔑"), info.key, info.signature, info.message);
          })()
          : c.body;
        await a.feedBody(body);
        assert.equal(a.client.closed, c.closes);
        if (!c.closes) assert.equal(core.metrics.c.unknownFrames, 1);
      });
    });
  }
});

Deno.test("Client refuses a 0.35 ClientInfo with version 4 silently, and checks access before the version", async () => {
  const denied = ed25519.utils.randomSecretKey();
  await withCore({ access: { mode: "denylist", keys: [ed25519.getPublicKey(denied)] } }, async (core) => {
    const v4 = memOpen(core, DERP);
    await v4.feed(clientInfo(v4.secret, 4));
    assert.equal(v4.client.closed, true);
    assert.deepEqual(v4.out.sent, [], "no reply for a bad version");
    const deniedV4 = memOpen(core, DERP, denied);
    await deniedV4.feed(clientInfo(denied, 4));
    await deniedV4.out.until(() => deniedV4.out.closed, "close");
    assert.deepEqual(deniedV4.out.sent, [{ type: "Health", problem: "not authenticated" }]);
  });
});

Deno.test("Client sends a denied 1.x client ServerDeniesAuth('not authorized') and a bad signature 'signature invalid'", async () => {
  const denied = ed25519.utils.randomSecretKey();
  await withCore({ access: { mode: "denylist", keys: [ed25519.getPublicKey(denied)] } }, async (core) => {
    const d = await memConnect(core, V2, denied);
    await d.out.until(() => d.out.closed, "close");
    assert.deepEqual(d.out.sent.slice(1), [{ type: "ServerDeniesAuth", reason: "not authorized" }]);
    const forged = memOpen(core, V1);
    const ch = await forged.out.nth("ServerChallenge");
    const other = clientAuth(ed25519.utils.randomSecretKey(), ch.challenge) as { signature: Uint8Array };
    await forged.feed({ type: "ClientAuth", publicKey: forged.key, signature: other.signature });
    await forged.out.until(() => forged.out.closed, "close");
    assert.deepEqual(forged.out.sent.slice(1), [{ type: "ServerDeniesAuth", reason: "signature invalid" }]);
    assert.equal(core.connectedKeys, 0);
    assert.equal(core.metrics.c.authFailures, 2);
  });
});

Deno.test("regression: Client ignores frames after refusing a 1.x handshake (no second ClientAuth)", async () => {
  await withCore({}, async (core) => {
    const a = memOpen(core, V2);
    const ch = await a.out.nth("ServerChallenge");
    // A slow socket: the ServerDeniesAuth write (after which the connection closes) does not finish at once.
    a.out.stalled = true;
    const bad = clientAuth(ed25519.utils.randomSecretKey(), ch.challenge) as { signature: Uint8Array };
    // Both frames arrive in one read chunk: the transport feeds the second as soon as the first is handled.
    await a.feed({ type: "ClientAuth", publicKey: a.key, signature: bad.signature });
    await a.feed(clientAuth(a.secret, ch.challenge));
    await settle();
    assert.deepEqual(a.out.sent.map((m) => m.type), ["ServerChallenge", "ServerDeniesAuth"]);
    assert.equal(core.metrics.c.accepts, 0, "never registered");
    assert.equal(core.connectedKeys, 0);
  });
});

Deno.test("regression: Client ignores frames after refusing a 0.35 handshake (no second ClientInfo)", async () => {
  const denied = ed25519.utils.randomSecretKey();
  await withCore({ access: { mode: "denylist", keys: [ed25519.getPublicKey(denied)] } }, async (core) => {
    const a = memOpen(core, DERP, denied);
    a.out.stalled = true;
    await a.feed(clientInfo(denied));
    await a.feed(clientInfo(ed25519.utils.randomSecretKey()));
    await settle();
    assert.deepEqual(a.out.sent, [{ type: "Health", problem: "not authenticated" }]);
    assert.equal(core.metrics.c.accepts, 0, "never registered");
    assert.equal(core.connectedKeys, 0);
  });
});

Deno.test("Client passes the key as 64 lowercase hex in X-Iroh-NodeId to the http access hook", async () => {
  const seen: string[] = [];
  const fakeFetch = ((_url: string, init: RequestInit) => {
    seen.push(new Headers(init.headers).get("x-iroh-nodeid")!);
    return Promise.resolve(new Response("true"));
  }) as unknown as typeof fetch;
  await withCore({ access: { mode: "http", url: "http://hook.invalid/" }, fetch: fakeFetch }, async (core) => {
    const a = await memConnect(core, V2);
    await a.out.nth("ServerConfirmsAuth");
    assert.deepEqual(seen, [keyHex(a.key)]);
  });
});

for (const [name, gen] of [["derp", DERP], ["v2", V2]] as const) {
  Deno.test(`Client charges ${name} frames against the receive rate limit; the second 50-byte frame waits (test_rate_limit)`, async () => {
    await withCore({ clientRx: { bytesPerSecond: 50 } }, async (core) => {
      const a = await memConnect(core, gen);
      const b = await memConnect(core, gen);
      const first = a.feed(datagramTo(a, b.key, new Uint8Array(50)));
      assert.equal(first, undefined, "the first frame passes at once");
      const second = a.feed(datagramTo(a, b.key, new Uint8Array(50)));
      assert.ok(second instanceof Promise, "the second frame is held");
      await b.out.until(() => datagramsOf(b).length === 1, "first datagram");
      assert.equal(core.metrics.c.connsRxRatelimited, 1);
      core.close(); // wakes the held frame at once instead of after ~1.7 s
      await second;
    });
  });
}

Deno.test("Client counts an ignored pong of a connection that closed meanwhile without throwing", async () => {
  await withCore({}, async (core) => {
    const a: MemConn = await memConnect(core, V2);
    a.client.close("gone");
    assert.equal(a.feed({ type: "Ping", data: new Uint8Array(8) }), undefined);
    assert.equal(a.out.ofType("Pong").length, 0);
  });
});

for (const [name, gen] of GENS) {
  Deno.test(`Client: a ${name} client whose access check answers after the establish deadline closed it is not registered (regression)`, async () => {
    const answer = Promise.withResolvers<Response>();
    let asked = 0;
    const slowHook = (() => {
      asked++;
      return answer.promise;
    }) as unknown as typeof fetch;
    await withCore(
      { establishTimeoutMs: 2000, access: { mode: "http", url: "http://hook.invalid/" }, fetch: slowHook },
      async (core, clock) => {
        const a = memOpen(core, gen);
        if (gen === DERP) {
          void a.feed(clientInfo(a.secret));
        } else {
          const ch = await a.out.nth("ServerChallenge");
          void a.feed(clientAuth(a.secret, ch.challenge));
        }
        await eventually(() => asked === 1, "the hook to be asked");
        clock.advance(2500);
        await eventually(() => a.client.closed, "the establish deadline to close it");
        answer.resolve(new Response("true"));
        await settle();
        await sweep();
        assert.equal(core.metrics.c.accepts, 0, "never registered");
        assert.equal(core.connectedKeys, 0);
        assert.equal(a.out.ofType("ServerConfirmsAuth").length, 0);
      },
    );
  });
}

Deno.test("Client: one 0.35 ClientInfo replayed on 2,000 connections writes a bounded number of log lines", async () => {
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l) });
  const secret = ed25519.utils.randomSecretKey();
  const before = suppressedLogLines();
  await withCore({ log }, async (core) => {
    const info = clientInfo(secret);
    for (let i = 0; i < 2000; i++) {
      const c = memOpen(core, DERP, secret);
      await c.feed(info);
    }
    assert.equal(core.metrics.c.accepts, 2000, "every replay did connect (and replace the previous one)");
    assert.equal(core.connectedKeys, 1);
    const replaced = lines.filter((l) => / replaced by /.test(l)).length;
    // The burst of the limiter (10) plus what refills while the test runs (1 a second).
    assert.ok(replaced >= 1 && replaced <= 20, `${replaced} "replaced by" lines`);
    assert.ok(suppressedLogLines() - before >= 1999 - 20);
    assert.match(
      core.metrics.render(),
      new RegExp(`\\nlog_lines_suppressed_total ${suppressedLogLines()}\\n`),
    );
  });
  // Closing the core writes the summary of what was dropped.
  assert.match(lines.at(-1)!, /\d+ similar lines suppressed in the last \d+ s \(first: .* replaced by /);
  assert.ok(lines.length <= 25, `${lines.length} lines in all`);
});
