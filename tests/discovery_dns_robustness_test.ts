/**
 * Hostile input at the DNS port: random and perturbed datagrams and TCP
 * streams, compression-pointer loops, oversize TCP messages, and 1,000
 * slow TCP clients holding connections while others are still answered.
 * The server here is the real UDP/TCP listener over an in-memory store.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";
import { DiscoveryService, startDnsServer } from "../discovery/mod.ts";
import { SqliteStore } from "../discovery/store_sqlite.ts";
import { PACKET_VERIFIER } from "../discovery/service.ts";
import { parseRelayPayload } from "../discovery/proto/signed_packet.ts";
import { perturb, Rng } from "./support/bytes.ts";
import { withTimeout } from "./support/relay_scope.ts";
import { irohTxt, nowUs, relayPayload, testKey } from "./support/pkarr_packet.ts";

const k = testKey();

async function withServer(
  fn: (port: number, svc: DiscoveryService) => Promise<void>,
  opts: { tcpIdleMs?: number } = {},
): Promise<void> {
  const svc = new DiscoveryService({
    store: new SqliteStore(":memory:"),
    zone: { origins: ["dns.example.org"] },
    rateLimit: "disabled",
    evictionAgeSecs: 3600,
  });
  const p = await parseRelayPayload(
    k.pub,
    relayPayload(k, nowUs(), irohTxt(k, ["relay=https://r.example/"])),
    PACKET_VERIFIER,
  );
  await svc.putPacket(p);
  const dns = startDnsServer(svc, { hostname: "127.0.0.1", port: 0, ...opts });
  try {
    await fn(dns.addr.port, svc);
  } finally {
    await dns.close();
    await svc.close();
  }
}

function query(id: number): Uint8Array {
  return new Uint8Array(dnsPacket.encode({
    id,
    type: "query",
    flags: 0x0100,
    questions: [{ name: `_iroh.${k.z32}.dns.example.org`, type: "TXT" }],
  }));
}

/** One UDP query from a fresh socket; null on timeout. */
async function udpAsk(port: number, q: Uint8Array, timeoutMs = 2000): Promise<Uint8Array | null> {
  const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    await sock.send(q, { transport: "udp", hostname: "127.0.0.1", port });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), timeoutMs));
    const got = await Promise.race([sock.receive().then(([d]) => d), timeout]);
    clearTimeout(timer);
    return got;
  } finally {
    sock.close();
  }
}

async function readExact(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  let have = 0;
  while (have < n) {
    const r = await conn.read(out.subarray(have));
    if (r === null) return null;
    have += r;
  }
  return out;
}

/** One query over a fresh TCP connection. */
async function tcpAsk(port: number, q: Uint8Array): Promise<Uint8Array | null> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const framed = new Uint8Array(2 + q.length);
    framed[0] = q.length >> 8;
    framed[1] = q.length & 0xff;
    framed.set(q, 2);
    await conn.write(framed);
    const len = await readExact(conn, 2);
    if (!len) return null;
    return await readExact(conn, (len[0]! << 8) | len[1]!);
  } finally {
    conn.close();
  }
}

function answered(reply: Uint8Array | null, id: number): boolean {
  if (!reply) return false;
  const m = dnsPacket.decode(Buffer.from(reply));
  return m.id === id && (m.flags! & 0xf) === 0 && (m.answers?.length ?? 0) === 1;
}

Deno.test("random and perturbed datagrams never stop the UDP server", async () => {
  await withServer(async (port, svc) => {
    const rng = new Rng(0xd15c0);
    const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    const valid = query(1);
    for (let i = 0; i < 2000; i++) {
      const d = i % 2 ? rng.bytes(rng.int(600)) : perturb(rng, valid);
      if (d.length === 0) continue;
      await sock.send(d, { transport: "udp", hostname: "127.0.0.1", port });
    }
    sock.close();
    // The flood may have filled the socket buffer, and UDP drops then; a resolver retries, so do we.
    let ok = false;
    for (let attempt = 0; attempt < 5 && !ok; attempt++) ok = answered(await udpAsk(port, query(4242), 1000), 4242);
    assert.ok(ok, "no answer after the flood");
    assert.ok(svc.metrics.dnsRequests.get({ protocol: "udp", rcode: "FORMERR" }) > 0);
  });
});

Deno.test("compression-pointer loops and pointers forward are FORMERR, not a hang", async () => {
  await withServer(async (port) => {
    const header = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    const selfLoop = Uint8Array.from([...header, 0xc0, 12, 0, 16, 0, 1]);
    const twoStep = Uint8Array.from([...header, 0xc0, 14, 0xc0, 12, 0, 16, 0, 1]);
    const deep = Uint8Array.from([...header, 1, 0x61, 0xc0, 12, 0, 16, 0, 1]);
    for (const q of [selfLoop, twoStep, deep]) {
      for (const reply of [await udpAsk(port, q), await tcpAsk(port, q)]) {
        assert.ok(reply, "no reply");
        const m = dnsPacket.decode(Buffer.from(reply));
        assert.equal(m.id, 0x1234);
        assert.equal(m.flags! & 0xf, 1); // FORMERR
      }
    }
  });
});

Deno.test("garbage and oversize TCP streams close only their own connection", async () => {
  await withServer(async (port, svc) => {
    const rng = new Rng(77);
    const conns: Deno.Conn[] = [];
    for (let i = 0; i < 50; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(c);
      await c.write(rng.bytes(1 + rng.int(3000))).catch(() => {});
    }
    // A length prefix beyond our 4096-byte query limit: the server closes that connection.
    const big = await Deno.connect({ hostname: "127.0.0.1", port });
    await big.write(Uint8Array.of(0xff, 0xff, 1, 2, 3));
    assert.equal(await withTimeout(big.read(new Uint8Array(16)), 5000, "oversize close"), null);
    big.close();
    assert.ok(answered(await tcpAsk(port, query(9)), 9));
    assert.ok(answered(await udpAsk(port, query(10)), 10));
    for (const c of conns) c.close();
    assert.ok(svc.metrics.dnsDropped.get({ reason: "tcp_oversize" }) >= 1);
  });
});

Deno.test("1,000 slow TCP clients hold connections while others are answered; idle ones are closed", async () => {
  await withServer(async (port, svc) => {
    const slow: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 1000; i++) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        await c.write(Uint8Array.of(0)); // half a length prefix, then nothing
        slow.push(c);
      }
      const t0 = performance.now();
      const results = await Promise.all([
        ...Array.from({ length: 50 }, (_, i) => tcpAsk(port, query(100 + i)).then((r) => answered(r, 100 + i))),
        ...Array.from({ length: 50 }, (_, i) => udpAsk(port, query(200 + i)).then((r) => answered(r, 200 + i))),
      ]);
      assert.deepEqual(results.filter((x) => !x).length, 0);
      assert.ok(performance.now() - t0 < 2000, "answers were held up by the slow clients");
      assert.ok(svc.metrics.tcpConnections >= 1000);
      // Each slow connection is closed once it has completed no query for the idle limit.
      const closed = await withTimeout(
        Promise.all(slow.map((c) => c.read(new Uint8Array(4)).catch(() => null))),
        10_000,
        "idle slow clients closed",
      );
      assert.ok(closed.every((r) => r === null));
    } finally {
      for (const c of slow) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
    }
  }, { tcpIdleMs: 1500 });
});
