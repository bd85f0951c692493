/**
 * @module
 * The STUN server over real UDP sockets: Debian's `stun-client` (an RFC
 * 3489 client nobody here wrote) learns its mapped address from us; iroh
 * 0.35's request form over IPv6; malformed packets, a wrong magic cookie,
 * truncated attributes and reflection attempts get no reply; a flood from
 * one source is capped while another source is still answered.
 */

import assert from "node:assert/strict";
import { encodeBindingRequest, parseBindingSuccess, startStunServer, type StunServer } from "../stun/mod.ts";
import { ensureDebPackages } from "./support/mail_server.ts";

const hex = (s: string) => new Uint8Array(s.replace(/\s+/g, "").match(/../g)!.map((h) => parseInt(h, 16)));

/** Receives one datagram, or undefined after `ms`. */
async function receiveWithin(conn: Deno.DatagramConn, ms: number): Promise<Uint8Array | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms));
  try {
    const got = await Promise.race([conn.receive().then(([b]) => b), timeout]);
    return got;
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until the server has counted `n` datagrams (bounded). */
async function untilCounted(server: StunServer, n: number): Promise<void> {
  for (let i = 0; i < 500 && server.metrics.c.requests < n; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(server.metrics.c.requests, n, "every datagram reached the server");
}

function txid(seed: number): Uint8Array {
  return new Uint8Array(12).map((_, i) => (seed * 31 + i) & 0xff);
}

Deno.test({
  name: "Debian's stun-client (RFC 3489) gets its mapped address; its change-address tests get no false answer",
  ignore: Deno.uid() !== 0,
  async fn() {
    await ensureDebPackages(["stun-client"]);
    const server = startStunServer({ hostname: "127.0.0.1", port: 0 });
    try {
      const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
      const srcPort = (probe.addr as Deno.NetAddr).port;
      probe.close();
      const out = await new Deno.Command("timeout", {
        args: ["20", "stun", `127.0.0.1:${server.addr.port}`, "0", "-v", "-p", String(srcPort)],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.match(text, new RegExp(`MappedAddress = 127\\.0\\.0\\.1:${srcPort}\\b`), text.slice(-1500));
      assert.match(text, /^test I = 1$/m, "test I (plain binding) answered");
      assert.match(text, /^test II = 0$/m, "test II (change IP and port) not answered: we have one address");
      assert.ok(server.metrics.c.ipv4Success >= 1);
      assert.ok(server.metrics.c.badRequests >= 1, "the change requests were dropped");
    } finally {
      await server.close();
    }
  },
});

Deno.test("iroh 0.35's Binding request over IPv6 gets XOR-MAPPED-ADDRESS with our source port", async () => {
  const server = startStunServer({ hostname: "::1", port: 0 });
  const client = Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 });
  try {
    await client.send(encodeBindingRequest(txid(1)), server.addr);
    const reply = await receiveWithin(client, 5000);
    assert.ok(reply, "a reply");
    assert.equal(reply.length, 44);
    assert.deepEqual([...reply.subarray(8, 20)], [...txid(1)], "same transaction id");
    assert.deepEqual(parseBindingSuccess(reply), {
      hostname: "0:0:0:0:0:0:0:1",
      port: (client.addr as Deno.NetAddr).port,
    });
    assert.equal(server.metrics.c.ipv6Success, 1);
    assert.match(server.metrics.render(), /^stun_ipv6_success_total 1$/m);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("malformed packets, a wrong magic cookie, truncated attributes and redirects get no reply", async () => {
  const server = startStunServer({ hostname: "127.0.0.1", port: 0 });
  const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const good = encodeBindingRequest(txid(2));
    const wrongCookie = good.slice();
    wrongCookie[7] = 0x43;
    const bad = [
      new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
      new Uint8Array(0),
      good.subarray(0, 19),
      good.subarray(0, 24), // length field says 8, only 4 attribute bytes follow
      wrongCookie,
      hex("000100082112a442 000000000000000000000000 8022 0008 61626364"), // attribute overruns the message
      hex("0001000c2112a442 000000000000000000000000 0002 0008 0001 0035 7f000001"), // RESPONSE-ADDRESS
      hex("0101000c2112a442 000000000000000000000000 0020 0008 0001 21ec 2010a746"), // a response
      new Uint8Array(1400).fill(0), // oversized
    ];
    for (const b of bad) await client.send(b, server.addr);
    await client.send(good, server.addr);
    const reply = await receiveWithin(client, 5000);
    assert.ok(reply);
    assert.deepEqual([...reply.subarray(8, 20)], [...txid(2)], "the first reply is for the good request");
    await untilCounted(server, bad.length + 1);
    assert.equal(server.metrics.c.badRequests, bad.length);
    assert.equal(server.metrics.c.ipv4Success, 1);
    assert.equal(await receiveWithin(client, 200), undefined, "nothing else came back");
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("a flood from one source is capped; another source is still answered", async () => {
  const server = startStunServer({ hostname: "127.0.0.1", port: 0 }, {
    rateLimit: { perSecond: 10, burst: 20, globalPerSecond: 100_000, maxSources: 1024 },
  });
  const flooder = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const other = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.2", port: 0 });
  try {
    const started = performance.now();
    const N = 400;
    for (let i = 0; i < N; i++) await flooder.send(encodeBindingRequest(txid(i)), server.addr);
    // While the server's socket buffer is full (the kernel drops what does not fit) a probe may be
    // lost too, so the other source asks until it is answered: the server is not monopolised.
    let otherAnswered = 0;
    for (let i = 0; i < 50 && otherAnswered === 0; i++) {
      await other.send(encodeBindingRequest(txid(9999)), server.addr);
      const reply = await receiveWithin(other, 100);
      if (reply) {
        otherAnswered++;
        assert.deepEqual(parseBindingSuccess(reply), {
          hostname: "127.0.0.2",
          port: (other.addr as Deno.NetAddr).port,
        });
      }
    }
    assert.equal(otherAnswered, 1, "the other source is answered during the flood");
    let received = 0;
    while (await receiveWithin(flooder, 300)) received++;
    while (await receiveWithin(other, 100)) otherAnswered++;
    const elapsedS = (performance.now() - started) / 1000;
    const c = server.metrics.c;
    assert.ok(c.requests > 100, `most of the flood reached the server (${c.requests})`);
    assert.ok(received >= 20, `the burst is answered (${received})`);
    assert.ok(received <= 20 + Math.ceil(10 * elapsedS) + 1, `${received} replies in ${elapsedS.toFixed(2)} s`);
    assert.equal(c.ipv4Success, received + otherAnswered, "what was counted was sent, nothing more");
    assert.equal(c.ratelimited, c.requests - c.ipv4Success, "every other request was refused");
  } finally {
    flooder.close();
    other.close();
    await server.close();
  }
});

Deno.test("on a dual-stack [::] socket (the default bind) an IPv4 client is answered with its IPv4 address", async () => {
  const server = startStunServer({ hostname: "::", port: 0 });
  const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    await client.send(encodeBindingRequest(txid(3)), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    const reply = await receiveWithin(client, 5000);
    assert.ok(reply);
    assert.equal(reply.length, 32, "IPv4 form, not an IPv4-mapped IPv6 address");
    assert.deepEqual(parseBindingSuccess(reply), { hostname: "127.0.0.1", port: (client.addr as Deno.NetAddr).port });
    assert.equal(server.metrics.c.ipv4Success, 1);
  } finally {
    client.close();
    await server.close();
  }
});
