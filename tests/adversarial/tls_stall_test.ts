/**
 * Issue 9, second run: connections stuck in the TLS handshake, on the HTTPS
 * relay listener and on IMAPS. 200 silent TCP connects plus 200
 * ClientHellos-then-silence, from four attacker addresses (100 each, under
 * every per-source cap, so only the handshake deadline can free them), are
 * held open by the attacker. The finding: all 400 fds still held after 75 s.
 *
 * Bound: with `tls_handshake_timeout_secs = 2` (CONTRACT) the server closes
 * every one of them and its fd count (/proc/<pid>/fd) is back within 20 of
 * where it started within 20 s (2 s deadline + generous slack for a loaded
 * machine, and for an IMAPS deadline that may follow its own default of
 * 10 s), while the attacker still holds its sockets. The timeouts are
 * counted, and a legitimate TLS client is served afterwards.
 */

import assert from "node:assert/strict";
import { tlsStall } from "./attacks.ts";
import { type AttackSocket, closedByServer } from "./support/sock.ts";
import { metricValue, pollUntil, Service, serviceToml, TLS_DIR } from "./support/service.ts";

const CA = await Deno.readTextFile(`${TLS_DIR}ca.pem`);
const FREED_WITHIN_MS = 20_000;

/** A TLS session to `port` completes its handshake and gets `expect` back for `send` (or just handshakes). */
async function tlsWorks(port: number, send?: string, expect?: RegExp): Promise<void> {
  const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [CA] });
  try {
    await conn.handshake();
    const buf = new Uint8Array(4096);
    let text = "";
    if (send) await conn.write(new TextEncoder().encode(send));
    while (expect && !expect.test(text)) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    if (expect) assert.match(text, expect);
  } finally {
    conn.close();
  }
}

async function stallAndWatch(svc: Service, port: number, listener: "relay" | "imap"): Promise<void> {
  const baseFds = svc.fds();
  let peakFds = baseFds;
  let freedMs = -1;
  let closedAtEnd = 0;
  const all: AttackSocket[] = [];
  const t0 = performance.now();
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  const silent = tlsStall(port, "silent", {
    n: 200,
    sources: 8,
    durationMs: 10_000,
    onHeld: (s) => {
      all.push(...s);
      return held;
    },
  });
  const hello = tlsStall(port, "hello", {
    n: 200,
    sources: 8,
    sourceOffset: 8,
    durationMs: 10_000,
    onHeld: async (s) => {
      all.push(...s);
      await pollUntil(() => all.length >= 400 || performance.now() - t0 > 15_000, 15_000);
      peakFds = Math.max(peakFds, svc.fds());
      const freed = await pollUntil(() => {
        peakFds = Math.max(peakFds, svc.fds());
        return svc.fds() <= baseFds + 20;
      }, FREED_WITHIN_MS);
      freedMs = freed ? Math.round(performance.now() - t0) : -1;
      // The server's fds go before our side has read every FIN: give those a moment.
      if (freed) await pollUntil(() => closedByServer(all) === all.length, 3000);
      closedAtEnd = closedByServer(all);
      release();
    },
  });
  const [rs, rh] = await Promise.all([silent, hello]);
  console.log(
    `${listener}: fds ${baseFds} -> peak ${peakFds} -> ${svc.fds()}, back after ${freedMs} ms; ` +
      `closed by server ${closedAtEnd}/${all.length}; silent ${JSON.stringify(rs)}; hello ${JSON.stringify(rh)}`,
  );
  assert.ok(rh.notes.serverHellos as number >= 150, "the ClientHellos were good ones (the server answered)");
  assert.ok(peakFds >= baseFds + 300, "the stalled connections were accepted and held fds");
  assert.ok(freedMs >= 0, `fds not back within ${FREED_WITHIN_MS} ms`);
  assert.equal(closedAtEnd, all.length, "every stalled connection was closed by the server");
  const m = await svc.metrics();
  assert.ok(metricValue(m, "admission_tls_handshake_timeouts_total", { listener }) >= 300, "timeouts counted");
}

Deno.test("adversarial: 400 TLS handshakes stalled on the relay's HTTPS port: all closed and fds back within 20 s", async () => {
  const svc = await Service.start(serviceToml({ relayTls: true, limits: "tls_handshake_timeout_secs = 2" }));
  try {
    await stallAndWatch(svc, svc.ports.relayTls!, "relay");
    await tlsWorks(svc.ports.relayTls!, "GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n", /^HTTP\/1\.1 200/);
  } finally {
    await svc.stop();
  }
});

Deno.test("adversarial: 400 TLS handshakes stalled on IMAPS: all closed and fds back within 20 s", async () => {
  const svc = await Service.start(serviceToml({
    imap: true,
    limits: "tls_handshake_timeout_secs = 2",
    imapLimits: "login_timeout_secs = 5",
  }));
  try {
    await stallAndWatch(svc, svc.ports.imaps!, "imap");
    await tlsWorks(svc.ports.imaps!, undefined, /^\* OK/);
  } finally {
    await svc.stop();
  }
});
