/**
 * @module
 * `cert_mode = "LetsEncrypt"` against a real ACME server, Debian's pebble,
 * with real HTTP-01 validation: pebble resolves the test hostname through a
 * DNS stub to 127.0.0.1 and fetches the token from our relay's plain HTTP
 * listener. The services are started as main.ts starts them
 * (`startServices`), with shorter retry waits.
 *
 * Covered: first issuance (files 0600, the certificate served to a client
 * that trusts only pebble's root), a restart that reuses the cached
 * certificate (no new order at pebble), renewal when 2/3 of the lifetime is
 * reached (by the timer, with a shifted clock), a forced renewal that swaps the
 * certificate on the open listener (a connected client stays connected, a
 * new client sees the new certificate), and a CA that is down at start
 * (one clear log line per failure, retries, recovery when it comes up,
 * placeholder and captive portal served meanwhile).
 */

import assert from "node:assert/strict";
import { certificateInfo, renewalTime } from "../acme/mod.ts";
import { type Config, configFromText } from "../config/mod.ts";
import { createLogger } from "../log/mod.ts";
import { type Services, startServices } from "../main.ts";
import { connectClient, type TestRelayClient } from "./support/relay_client.ts";
import { withTimeout } from "./support/relay_scope.ts";
import { freePort } from "./support/mail_server.ts";
import { makeTestCa, type Pebble, startDnsStub, startPebble } from "./support/pebble.ts";

const HOST = "relay.acme.test";
const FAST = { backoff: { initialMs: 300, maxMs: 1000 }, poll: { minMs: 100, maxMs: 500 } };

/** A logger whose lines can be awaited. */
class LogCapture {
  lines: string[] = [];
  #waiters: (() => void)[] = [];
  readonly logger = createLogger({
    level: "info",
    write: (line) => {
      this.lines.push(line);
      for (const w of this.#waiters.splice(0)) w();
    },
  });

  /** Waits for a line matching `re` at index `from` or later; returns it. */
  async waitFor(re: RegExp, from = 0, timeoutMs = 30_000): Promise<string> {
    return await withTimeout(
      (async () => {
        for (;;) {
          const hit = this.lines.slice(from).find((l) => re.test(l));
          if (hit) return hit;
          await new Promise<void>((r) => this.#waiters.push(r));
        }
      })(),
      timeoutMs,
      `log line ${re}; log so far:\n${this.lines.join("\n")}`,
    );
  }
}

function relayConfig(o: { httpPort: number; certDir: string; directoryUrl: string; caFile: string }): Config {
  return configFromText(
    `http_bind_addr = "127.0.0.1:${o.httpPort}"
enable_metrics = false
enable_stun = false
[tls]
cert_mode = "LetsEncrypt"
hostname = "${HOST}"
contact = "ops@${HOST}"
cert_dir = "${o.certDir}"
https_bind_addr = "127.0.0.1:0"
acme_directory_url = "${o.directoryUrl}"
acme_ca_file = "${o.caFile}"
[imap]
bind_addr = "127.0.0.1:0"
tls_bind_addr = "127.0.0.1:0"
`,
    "acme_test.toml",
  ).config;
}

/** Serial number and subject of the certificate served on `port` for HOST (openssl s_client, a client nobody here wrote). */
async function servedCertificate(port: number): Promise<{ serial: string; subject: string; issuer: string }> {
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      `openssl s_client -connect 127.0.0.1:${port} -servername ${HOST} </dev/null 2>/dev/null | ` +
      `openssl x509 -noout -serial -subject -issuer`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const field = (k: string) => new RegExp(`^${k}\\s*=\\s*(.*)$`, "m").exec(text)?.[1]?.trim() ?? "";
  return { serial: field("serial"), subject: field("subject"), issuer: field("issuer") };
}

async function tlsClient(port: number, root: string): Promise<TestRelayClient> {
  return await connectClient(port, "v2", { tlsHostname: HOST, caCerts: [root] });
}

async function mode(path: string): Promise<string> {
  return ((await Deno.stat(path)).mode! & 0o777).toString(8);
}

Deno.test({
  name: "LetsEncrypt mode: first issuance, forced renewal swaps it live, restart reuses the cache, the timer renews",
  ignore: Deno.uid() !== 0, // installs pebble with apt-get if missing
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "acme-test-" });
    const dns = startDnsStub([HOST]);
    const httpPort = freePort();
    let pebble: Pebble | undefined;
    let services: Services | undefined;
    const open: TestRelayClient[] = [];
    try {
      pebble = await startPebble({ httpPort, dnsPort: dns.port, dir });
      await Deno.writeTextFile(`${dir}/acme-ca.pem`, pebble.caPem);
      const certDir = `${dir}/certs`;
      const config = relayConfig({
        httpPort,
        certDir,
        directoryUrl: pebble.directoryUrl,
        caFile: `${dir}/acme-ca.pem`,
      });

      // First start: nothing cached, a placeholder until pebble has validated us over HTTP-01.
      let log = new LogCapture();
      services = await startServices(config, log.logger, { acme: FAST });
      await log.waitFor(/no certificate for relay\.acme\.test yet: HTTPS serves a self-signed placeholder/);
      await log.waitFor(/certificate for relay\.acme\.test obtained \(valid until/);
      assert.equal(pebble.orders(), 1);
      assert.ok(services.acme!.challengesServed >= 1, "pebble fetched the token from our HTTP listener");
      assert.ok(dns.queries.some((q) => q === `A ${HOST}`), "pebble resolved the hostname");
      for (const f of ["acme-cert.pem", "acme-key.pem", "acme-account.key"]) {
        assert.equal(await mode(`${certDir}/${f}`), "600", f);
      }
      const root = await pebble.issuerRoot();
      const httpsPort = services.relay!.httpsAddr!.port;
      const first = await servedCertificate(httpsPort);
      assert.match(first.subject, /relay\.acme\.test/);
      assert.match(first.issuer, /Pebble Intermediate CA/);
      // IMAPS serves the same files ([imap] inherits [tls]).
      const imapsPort = services.imap!.addrs.tls!.port;
      assert.equal((await servedCertificate(imapsPort)).serial, first.serial, "IMAPS serves the ACME certificate");
      const client = await tlsClient(httpsPort, root);
      open.push(client);
      await client.ping();
      // The plain port is the captive portal, as before.
      const portal = await fetch(`http://127.0.0.1:${httpPort}/generate_204`);
      await portal.body?.cancel();
      assert.equal(portal.status, 204);

      // Forced renewal: a new order, new files, the same reload as SIGHUP.
      let mark = log.lines.length;
      await services.acme!.renewNow();
      await log.waitFor(/certificate for relay\.acme\.test obtained/, mark);
      assert.equal(pebble.orders(), 2);
      const second = await servedCertificate(httpsPort);
      assert.notEqual(second.serial, first.serial, "a new TLS client sees the new certificate");
      assert.equal((await servedCertificate(imapsPort)).serial, second.serial, "IMAPS swapped to it too");
      await client.ping(); // the client connected before the swap is still connected
      const fresh = await tlsClient(httpsPort, root);
      open.push(fresh);
      await client.send(fresh.publicKey, new TextEncoder().encode("across the swap"));
      assert.equal(new TextDecoder().decode((await fresh.recv()).data), "across the swap");
      for (const c of open.splice(0)) c.close();
      await services.close();
      services = undefined;

      // Restart: the cached certificate is served, no new order.
      log = new LogCapture();
      services = await startServices(config, log.logger, { acme: FAST });
      await log.waitFor(/using the cached certificate for relay\.acme\.test .*renewal from/);
      const third = await servedCertificate(services.relay!.httpsAddr!.port);
      assert.equal(third.serial, second.serial);
      mark = log.lines.length;
      // Give a wrongly scheduled request every chance to show up: one full retry period.
      await new Promise((r) => setTimeout(r, FAST.backoff.maxMs + 200));
      assert.equal(pebble.orders(), 2, "no new order after a restart");
      assert.ok(!log.lines.slice(mark).some((l) => /requesting a certificate/.test(l)));
      assert.equal(services.acme!.status().certificate, "valid");
      await services.close();
      services = undefined;

      // Renewal time reached (a clock moved to just before 2/3 of the lifetime): the timer renews by itself.
      const cached = certificateInfo(await Deno.readTextFile(`${certDir}/acme-cert.pem`));
      const offset = renewalTime(cached) - Date.now() - 500;
      log = new LogCapture();
      services = await startServices(config, log.logger, { acme: { ...FAST, now: () => Date.now() + offset } });
      await log.waitFor(/using the cached certificate/);
      await log.waitFor(/certificate for relay\.acme\.test obtained/);
      assert.equal(pebble.orders(), 3, "one order, made by the renewal timer");
      const fourth = await servedCertificate(services.relay!.httpsAddr!.port);
      assert.notEqual(fourth.serial, second.serial, "the renewed certificate is served");
    } finally {
      for (const c of open) c.close();
      await services?.close();
      await pebble?.stop();
      await dns.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "LetsEncrypt mode: a CA that is down at start is named in the log, retried with backoff, and recovered from",
  ignore: Deno.uid() !== 0,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "acme-test-" });
    const dns = startDnsStub([HOST]);
    const httpPort = freePort();
    const acmePort = freePort();
    let pebble: Pebble | undefined;
    let services: Services | undefined;
    try {
      const ca = await makeTestCa();
      await Deno.writeTextFile(`${dir}/acme-ca.pem`, ca.caPem);
      const config = relayConfig({
        httpPort,
        certDir: `${dir}/certs`,
        directoryUrl: `https://127.0.0.1:${acmePort}/dir`,
        caFile: `${dir}/acme-ca.pem`,
      });
      const log = new LogCapture();
      services = await startServices(config, log.logger, { acme: FAST });
      const failure = await log.waitFor(/certificate request for relay\.acme\.test failed \(attempt 1\)/);
      assert.match(failure, /cannot reach the ACME server https:\/\/127\.0\.0\.1:\d+\/dir/);
      assert.match(failure, /HTTPS keeps the placeholder; retrying in \d+(\.\d)?s/);
      await log.waitFor(/failed \(attempt 2\)/);
      // Meanwhile: HTTPS answers with the placeholder, the captive portal works.
      const served = await servedCertificate(services.relay!.httpsAddr!.port);
      assert.match(served.subject, /acme-pending\.iroh-relay-deno\.invalid/);
      const portal = await fetch(`http://127.0.0.1:${httpPort}/generate_204`);
      await portal.body?.cancel();
      assert.equal(portal.status, 204);
      assert.equal(services.acme!.status().certificate, "placeholder");

      pebble = await startPebble({ httpPort, dnsPort: dns.port, dir, port: acmePort, ca });
      await log.waitFor(/certificate for relay\.acme\.test obtained/);
      const after = await servedCertificate(services.relay!.httpsAddr!.port);
      assert.match(after.issuer, /Pebble Intermediate CA/);
      const client = await tlsClient(services.relay!.httpsAddr!.port, await pebble.issuerRoot());
      await client.ping();
      client.close();
      assert.equal(services.acme!.status().failures, 0);
    } finally {
      await services?.close();
      await pebble?.stop();
      await dns.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "LetsEncrypt mode: a hostname that does not point here and an untrusted ACME server are named in the log",
  ignore: Deno.uid() !== 0,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "acme-test-" });
    const dns = startDnsStub([]); // the CA cannot resolve the name
    const httpPort = freePort();
    let pebble: Pebble | undefined;
    let services: Services | undefined;
    try {
      pebble = await startPebble({ httpPort, dnsPort: dns.port, dir });
      await Deno.writeTextFile(`${dir}/acme-ca.pem`, pebble.caPem);
      const base = {
        httpPort,
        certDir: `${dir}/certs`,
        directoryUrl: pebble.directoryUrl,
        caFile: `${dir}/acme-ca.pem`,
      };
      let log = new LogCapture();
      services = await startServices(relayConfig(base), log.logger, { acme: FAST });
      const wrongName = await log.waitFor(/failed \(attempt 1\)/);
      assert.match(wrongName, /validation of relay\.acme\.test failed \(the name must point at this server/);
      assert.match(wrongName, /HTTPS keeps the placeholder; retrying in/);
      assert.equal(services.acme!.status().certificate, "placeholder");
      await services.close();
      services = undefined;

      // Without acme_ca_file the test CA's HTTPS certificate is not trusted.
      await Deno.writeTextFile(`${dir}/other-ca.pem`, (await makeTestCa()).caPem);
      log = new LogCapture();
      services = await startServices(relayConfig({ ...base, caFile: `${dir}/other-ca.pem` }), log.logger, {
        acme: FAST,
      });
      const untrusted = await log.waitFor(/failed \(attempt 1\)/);
      assert.match(untrusted, /the ACME server's HTTPS certificate is not trusted .*acme_ca_file/);
      assert.equal(pebble.orders(), 1, "only the first relay got as far as an order");
    } finally {
      await services?.close();
      await pebble?.stop();
      await dns.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
