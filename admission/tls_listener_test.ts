/**
 * The TLS acceptor over real loopback sockets: handshakes that stall are cut
 * at the deadline and their descriptors really come back (counted in
 * /proc/self/fd), admission happens before TLS, the certificate can be
 * swapped without rebinding, and bytes pass intact both ways.
 */

import assert from "node:assert/strict";
import * as net from "node:net";
import * as tls from "node:tls";
import { AdmissionGate, AdmissionMetrics, TlsAcceptor } from "./mod.ts";

const FIXTURES = new URL("../tests/fixtures/", import.meta.url).pathname;
const A = {
  cert: Deno.readTextFileSync(`${FIXTURES}localhost.crt`),
  key: Deno.readTextFileSync(`${FIXTURES}localhost.key`),
};
const B = {
  cert: Deno.readTextFileSync(`${FIXTURES}imap_tls/cert.pem`),
  key: Deno.readTextFileSync(`${FIXTURES}imap_tls/key.pem`),
  ca: Deno.readTextFileSync(`${FIXTURES}imap_tls/ca.pem`),
};

function openFds(): number {
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n;
}

const WIDE = { maxConnections: 100_000, reserve: 0, maxPerSource: 100_000, perSecond: 0, burst: 1 };

async function acceptor(limits = WIDE, handshakeTimeoutMs = 400) {
  const metrics = new AdmissionMetrics();
  const l = await TlsAcceptor.listen({
    hostname: "127.0.0.1",
    port: 0,
    ...A,
    handshakeTimeoutMs,
    gate: new AdmissionGate(limits),
    metrics,
    listener: "relay",
  });
  return { l, metrics };
}

/** Serves echo on every accepted connection until the acceptor closes. */
async function echo(l: TlsAcceptor): Promise<void> {
  for (;;) {
    let a;
    try {
      a = await l.accept();
    } catch {
      return;
    }
    (async () => {
      const buf = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await a.conn.read(buf);
          if (n === null) break;
          await a.conn.write(buf.subarray(0, n));
        }
      } catch {
        // peer gone
      } finally {
        a.conn.close();
        a.ticket.release();
      }
    })();
  }
}

/** A real ClientHello, captured from Deno's TLS client against a raw listener. */
async function clientHello(): Promise<Uint8Array> {
  const raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = Deno.connectTls({ hostname: "localhost", port: (raw.addr as Deno.NetAddr).port, caCerts: [A.cert] })
    .then((c) => c.handshake().finally(() => c.close()))
    .catch(() => {});
  const c = await raw.accept();
  const buf = new Uint8Array(4096);
  const n = await c.read(buf);
  c.close();
  raw.close();
  await client;
  return buf.slice(0, n ?? 0);
}

async function waitUntil(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const kind of ["silent TCP connects", "ClientHello then silence"] as const) {
  Deno.test(`TlsAcceptor releases the descriptors of 400 ${kind} at the handshake deadline`, async () => {
    const hello = kind === "ClientHello then silence" ? await clientHello() : null;
    const { l, metrics } = await acceptor();
    const serving = echo(l);
    const before = openFds();
    const N = 400;
    const clients: Deno.Conn[] = [];
    try {
      for (let i = 0; i < N; i++) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
        if (hello) await c.write(hello);
        clients.push(c);
      }
      await waitUntil(() => metrics.tlsHandshakeTimeouts("relay") === N && l.handshaking === 0, 10_000);
      assert.equal(metrics.tlsHandshakeTimeouts("relay"), N);
      // Our N client sockets are still open; the server's N are gone.
      await waitUntil(() => openFds() <= before + N + 4, 5_000);
      const during = openFds() - before - N;
      assert.ok(during <= 4, `server still holds ${during} descriptors after the deadline`);
      // The clients see the connection end.
      const ends = await Promise.all(clients.map(async (c) => {
        try {
          while (await c.read(new Uint8Array(8192)) !== null) { /* server flight before the close */ }
        } catch {
          // reset: ended as well
        }
        return true;
      }));
      assert.equal(ends.length, N);
      // And a real client still gets through.
      const ok = await Deno.connectTls({ hostname: "localhost", port: l.addr.port, caCerts: [A.cert] });
      await ok.write(new TextEncoder().encode("ping"));
      const buf = new Uint8Array(16);
      const n = await ok.read(buf);
      assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "ping");
      ok.close();
    } finally {
      for (const c of clients) c.close();
      l.close();
      await serving;
    }
  });
}

Deno.test("TlsAcceptor refuses over-limit sources before any TLS work", async () => {
  const { l, metrics } = await acceptor({ ...WIDE, maxPerSource: 2 });
  const serving = echo(l);
  try {
    const held = [
      await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }),
      await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }),
    ];
    await waitUntil(() => l.handshaking === 2, 5_000);
    const third = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
    // Refused: closed without a byte (no ServerHello, even after a ClientHello).
    await third.write(await clientHello()).catch(() => {});
    let got: number | null = null;
    try {
      got = await third.read(new Uint8Array(100));
    } catch {
      got = null;
    }
    assert.equal(got, null);
    assert.equal(metrics.refusedCount("relay", "source_connections"), 1);
    third.close();
    // Another source (127.0.0.2) is not affected.
    const other = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const raw = net.connect({ host: "127.0.0.1", port: l.addr.port, localAddress: "127.0.0.2" });
      const s = tls.connect({ socket: raw, servername: "localhost", ca: A.cert }, () => resolve(s));
      s.on("error", reject);
    });
    other.destroy();
    for (const c of held) c.close();
  } finally {
    l.close();
    await serving;
  }
});

Deno.test("TlsAcceptor.setCertificate() serves the new certificate without rebinding; a bad pair changes nothing", async () => {
  const { l } = await acceptor();
  const serving = echo(l);
  const port = l.addr.port;
  try {
    const first = await Deno.connectTls({ hostname: "localhost", port, caCerts: [A.cert] });
    await first.handshake();
    assert.throws(() => l.setCertificate(A.cert, B.key));
    assert.throws(() => l.setCertificate("not a certificate", A.key));
    // Still A.
    const stillA = await Deno.connectTls({ hostname: "localhost", port, caCerts: [A.cert] });
    await stillA.handshake();
    stillA.close();
    l.setCertificate(B.cert, B.key);
    assert.equal(l.addr.port, port);
    const second = await Deno.connectTls({ hostname: "localhost", port, caCerts: [B.ca] });
    await second.handshake();
    second.close();
    await assert.rejects(async () => {
      const c = await Deno.connectTls({ hostname: "localhost", port, caCerts: [A.cert] });
      try {
        await c.handshake();
      } finally {
        c.close();
      }
    });
    // The connection opened before the swap still works.
    await first.write(new TextEncoder().encode("old"));
    const buf = new Uint8Array(8);
    const n = await first.read(buf);
    assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "old");
    first.close();
  } finally {
    l.close();
    await serving;
  }
});

Deno.test("TlsAcceptor carries 8 MiB both ways intact", async () => {
  const { l } = await acceptor();
  const serving = echo(l);
  try {
    const c = await Deno.connectTls({ hostname: "localhost", port: l.addr.port, caCerts: [A.cert] });
    const total = 8 * 1024 * 1024;
    const data = new Uint8Array(total);
    for (let i = 0; i < total; i++) data[i] = (i * 2654435761) >>> 24;
    const reader = (async () => {
      const got = new Uint8Array(total);
      let off = 0;
      while (off < total) {
        const n = await c.read(got.subarray(off));
        if (n === null) break;
        off += n;
      }
      return got.subarray(0, off);
    })();
    for (let off = 0; off < total;) off += await c.write(data.subarray(off, Math.min(total, off + 100_000)));
    const got = await reader;
    assert.equal(got.length, total);
    assert.ok(got.every((b, i) => b === data[i]), "bytes differ");
    c.close();
  } finally {
    l.close();
    await serving;
  }
});
