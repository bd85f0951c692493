/** `[tls]` and its LetsEncrypt (ACME) keys (`tls.ts`). */

import assert from "node:assert/strict";
import { assertConfigError, load } from "./test_support.ts";

Deno.test("validateConfig() reads cert_mode LetsEncrypt with upstream's keys and ours", () => {
  const { config, warnings } = load(
    'http_bind_addr = "[::]:80"\n[tls]\ncert_mode = "LetsEncrypt"\nhostname = "Relay.Example.org"\n' +
      'contact = "ops@example.org"\ncert_dir = "/var/lib/relay/"',
  );
  assert.deepEqual(warnings, []);
  assert.equal(config.tls!.certMode, "LetsEncrypt");
  assert.deepEqual(config.tls!.acme, {
    hostnames: ["relay.example.org"],
    contact: "ops@example.org",
    directoryUrl: "https://acme-v02.api.letsencrypt.org/directory",
    certDir: "/var/lib/relay/",
  });
  assert.equal(config.tls!.certPath, "/var/lib/relay/acme-cert.pem", "IMAPS and HTTPS serve what ACME writes");
  assert.equal(config.tls!.keyPath, "/var/lib/relay/acme-key.pem");
  const staging = load(
    'http_bind_addr = "[::]:8080"\n' +
      '[tls]\ncert_mode = "LetsEncrypt"\nhostname = ["a.example", "b.example"]\n' +
      'contact = "mailto:a@example.org"\nprod_tls = false\nacme_directory_url = "https://127.0.0.1:14000/dir"\n' +
      'acme_ca_file = "/ca.pem"\nmanual_cert_path = "/x.pem"',
  );
  assert.deepEqual(staging.config.tls!.acme, {
    hostnames: ["a.example", "b.example"],
    contact: "a@example.org",
    directoryUrl: "https://127.0.0.1:14000/dir",
    caFile: "/ca.pem",
    certDir: ".",
  });
  assert.ok(staging.warnings.some((w) => w.startsWith("tls.manual_cert_path: ignored")), String(staging.warnings));
  assert.ok(staging.warnings.some((w) => w.startsWith("http_bind_addr: the CA validates on port 80")));
  const le = '[tls]\ncert_mode = "LetsEncrypt"\nhostname = "a.example"\ncontact = "a@example.org"\nprod_tls = false';
  assert.equal(load(le).config.tls!.acme!.directoryUrl, "https://acme-staging-v02.api.letsencrypt.org/directory");
  const env = { env: { IROH_RELAY_ACME_URL: "https://ca.test/dir", IROH_RELAY_ACME_CA: "/env-ca.pem" } };
  assert.equal(load(le, env).config.tls!.acme!.directoryUrl, "https://ca.test/dir");
  assert.equal(load(le, env).config.tls!.acme!.caFile, "/env-ca.pem");
});

Deno.test("validateConfig() names the LetsEncrypt key that is missing or wrong", () => {
  const base = '[tls]\ncert_mode = "LetsEncrypt"\n';
  const ok = 'hostname = "a.example"\ncontact = "a@example.org"\n';
  assertConfigError(() => load(base + 'contact = "a@example.org"'), "tls.hostname", /required/);
  assertConfigError(() => load(base + 'hostname = "a.example"'), "tls.contact", /required/);
  assertConfigError(() => load(base + 'hostname = "*.example"\ncontact = "a@b.c"'), "tls.hostname", /wildcard/);
  assertConfigError(() => load(base + 'hostname = "192.0.2.1"\ncontact = "a@b.c"'), "tls.hostname", /DNS name/);
  assertConfigError(() => load(base + 'hostname = ["a.example", "b_x"]\ncontact = "a@b.c"'), "tls.hostname[1]");
  assertConfigError(() => load(base + 'hostname = "a.example"\ncontact = "nobody"'), "tls.contact", /e-mail/);
  assertConfigError(
    () => load(base + ok + 'acme_directory_url = "http://ca.test/dir"'),
    "tls.acme_directory_url",
    /https/,
  );
  assertConfigError(() => load(base + ok + 'acme_directory_url = "nope"'), "tls.acme_directory_url");
  assertConfigError(() => load(base + ok + 'acme_ca_file = ""'), "tls.acme_ca_file");
  assertConfigError(() => load("enable_relay = false\n" + base + ok), "tls.cert_mode", /enable_relay/);
  assertConfigError(() => load('[tls]\nhttps_bind_addr = "[::]:443"'), "tls.cert_mode", /required/);
  assertConfigError(() => load('[tls]\ncert_mode = "Automatic"'), "tls.cert_mode", /"LetsEncrypt"/);
  assert.ok(
    load('[tls]\ncert_mode = "Manual"\nacme_ca_file = "/x"').warnings.some((w) => w.startsWith("tls.acme_ca_file")),
  );
});

Deno.test("validateConfig() reads [tls] Manual with upstream's default paths and ports", () => {
  const { config } = load('http_bind_addr = "10.0.0.1:80"\n[tls]\ncert_mode = "Manual"');
  assert.deepEqual(config.tls, {
    certMode: "Manual",
    httpsBindAddr: { hostname: "10.0.0.1", port: 443 },
    quicBindAddr: { hostname: "10.0.0.1", port: 7842 },
    hostnames: [],
    certPath: "./default.crt",
    keyPath: "./default.key",
    dangerousHttpOnly: false,
  });
  const custom = load(`
    [tls]
    cert_mode = "Reloading"
    cert_dir = "/etc/relay"
    https_bind_addr = "[::1]:8443"
    hostname = ["a.example", "b.example"]
    manual_key_path = "/k.pem"
  `).config.tls!;
  assert.equal(custom.certMode, "Reloading");
  assert.equal(custom.certPath, "/etc/relay/default.crt");
  assert.equal(custom.keyPath, "/k.pem");
  assert.deepEqual(custom.httpsBindAddr, { hostname: "::1", port: 8443 });
  assert.deepEqual(custom.quicBindAddr, { hostname: "::1", port: 7842 });
  assert.deepEqual(custom.hostnames, ["a.example", "b.example"]);
  assert.equal(load('[tls]\ncert_mode = "Manual"', { dev: true }).config.tls!.dangerousHttpOnly, true);
});

Deno.test("validateConfig() requires [tls] for enable_quic_addr_discovery", () => {
  assertConfigError(() => load("enable_quic_addr_discovery = true"), "enable_quic_addr_discovery", /tls/);
  const { warnings } = load('enable_quic_addr_discovery = true\n[tls]\ncert_mode = "Manual"');
  assert.ok(warnings.some((w) => w.startsWith("enable_quic_addr_discovery:")));
});
