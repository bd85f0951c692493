/**
 * TLS handshakes that never finish, against the real process: 400 silent
 * TCP connects and 400 ClientHellos-then-silence on the HTTPS relay port and
 * on IMAPS. With `tls_handshake_timeout_secs = 1` every one of them is cut
 * and the service's descriptor count (/proc/<pid>/fd) comes back to where it
 * was while the attacker still holds its sockets open; on Deno's own
 * `listenTls` (before) all 800 stayed open. Real clients are served during
 * and after.
 */

import assert from "node:assert/strict";
import { eventually, metric, ServiceProcess } from "./support/service_process.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
const CERT = `${FIXTURES}localhost.crt`;
const KEY = `${FIXTURES}localhost.key`;
const N = 400;

/** A real ClientHello, captured from Deno's TLS client against a raw listener. */
async function clientHello(): Promise<Uint8Array> {
  const raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const caCerts = [await Deno.readTextFile(CERT)];
  const client = Deno.connectTls({ hostname: "localhost", port: (raw.addr as Deno.NetAddr).port, caCerts })
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

Deno.test("TLS: stalled handshakes on HTTPS and IMAPS are cut at the deadline and their descriptors come back", async () => {
  const p = await ServiceProcess.start(`
http_bind_addr = "127.0.0.1:0"
metrics_bind_addr = "127.0.0.1:0"
[limits]
tls_handshake_timeout_secs = 1
max_connections_per_source = 2000
source_connects_per_sec = 0
[tls]
cert_mode = "Manual"
https_bind_addr = "127.0.0.1:0"
manual_cert_path = "${CERT}"
manual_key_path = "${KEY}"
[imap]
tls_bind_addr = "127.0.0.1:0"
iroh_relay_url = "https://localhost/"
[imap.limits]
max_sessions = 2000
max_sessions_per_source = 2000
source_connects_per_sec = 0
`);
  const hello = await clientHello();
  const caCerts = [await Deno.readTextFile(CERT)];
  try {
    const https = await p.port(/relay listening on https:\/\/127\.0\.0\.1:(\d+)/);
    const imaps = await p.port(/imaps:\/\/127\.0\.0\.1:(\d+)/);
    const metricsPort = await p.port(/metrics on http:\/\/127\.0\.0\.1:(\d+)/);
    const base = p.fds();
    let expectTimeouts = { relay: 0, imap: 0 };
    for (const [listener, port] of [["relay", https], ["imap", imaps]] as const) {
      for (const withHello of [false, true]) {
        const attackers: Deno.Conn[] = [];
        for (let i = 0; i < N; i++) {
          const c = await Deno.connect({ hostname: "127.0.0.1", port });
          if (withHello) await c.write(hello);
          attackers.push(c);
        }
        let peak = p.fds();
        const sampler = setInterval(() => peak = Math.max(peak, p.fds()), 20);
        expectTimeouts = { ...expectTimeouts, [listener]: expectTimeouts[listener] + N };
        const want = expectTimeouts[listener];
        assert.ok(
          await eventually(
            async () =>
              (await metric(
                metricsPort,
                "admission_tls_handshake_timeouts_total",
                `listener="${listener}"`,
              )) >= want,
            10_000,
          ),
          `${listener}: ${want} handshake timeouts counted`,
        );
        // The attacker still holds every socket open; the service must not.
        assert.ok(await eventually(() => p.fds() <= base + 5, 5_000), `${listener}: fds ${p.fds()} vs ${base}`);
        clearInterval(sampler);
        console.log(
          `${listener} ${
            withHello ? "ClientHello+silence" : "silent"
          }: service fds ${base} -> ${peak} during -> ${p.fds()} after the deadline (${N} attacker sockets still open)`,
        );
        // A real client still completes a handshake.
        const ok = await Deno.connectTls({ hostname: "localhost", port, caCerts });
        await ok.handshake();
        ok.close();
        for (const c of attackers) c.close();
      }
    }
  } finally {
    await p.stop();
  }
});
