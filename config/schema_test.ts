/**
 * The assembled validation (`schema.ts`): the relay's top-level keys and
 * `[limits]`, strictness and did-you-mean across tables, bind addresses,
 * TOML syntax errors, `[imap]`. `access`, `[tls]` and `[mesh]` have their
 * own test files.
 */

import assert from "node:assert/strict";
import { ConfigError, formatBindAddr, parseBindAddr } from "./schema.ts";
import { assertConfigError, load } from "./test_support.ts";

Deno.test("validateConfig() fills upstream defaults for an empty file", () => {
  const { config, warnings } = load("");
  assert.deepEqual(warnings, []);
  assert.equal(config.enableRelay, true);
  assert.deepEqual(config.httpBindAddr, { hostname: "::", port: 80 });
  assert.equal(config.enableMetrics, true);
  assert.deepEqual(config.metricsBindAddr, { hostname: "::", port: 9090 });
  assert.equal(config.enableQuicAddrDiscovery, false);
  assert.equal(config.keyCacheCapacity, 1024 * 1024);
  assert.deepEqual(config.access, { mode: "everyone" });
  assert.equal(config.tls, undefined);
});

Deno.test("validateConfig() under --dev listens on [::]:3340 with metrics off", () => {
  const { config } = load("", { dev: true });
  assert.deepEqual(config.httpBindAddr, { hostname: "::", port: 3340 });
  assert.equal(config.enableMetrics, false);
});

Deno.test("validateConfig() derives the metrics address from http_bind_addr's IP", () => {
  const { config } = load('http_bind_addr = "127.0.0.1:3340"');
  assert.deepEqual(config.metricsBindAddr, { hostname: "127.0.0.1", port: 9090 });
});

Deno.test("validateConfig() reads [limits.client.rx] (test_rate_limit_config)", () => {
  const { config } = load(`
    [limits.client.rx]
    bytes_per_second = 400
    max_burst_bytes = 800
  `);
  assert.deepEqual(config.limits.clientRx, { bytesPerSecond: 400, maxBurstBytes: 800 });
  const rateOnly = load("[limits.client.rx]\nbytes_per_second = 400").config;
  assert.deepEqual(rateOnly.limits.clientRx, { bytesPerSecond: 400 });
});

Deno.test("validateConfig() sets no rate limit by default (test_rate_limit_default)", () => {
  assert.equal(load("").config.limits.clientRx, undefined);
  assert.equal(load("[limits]").config.limits.clientRx, undefined);
  assert.equal(load("[limits.client.rx]").config.limits.clientRx, undefined);
});

Deno.test("validateConfig() refuses invalid rate limits, naming the key", () => {
  assertConfigError(() => load("[limits.client.rx]\nmax_burst_bytes = 800"), "limits.client.rx.max_burst_bytes");
  assertConfigError(() => load("[limits.client.rx]\nbytes_per_second = 0"), "limits.client.rx.bytes_per_second");
  assertConfigError(
    () => load("[limits.client.rx]\nbytes_per_second = 4294967296"),
    "limits.client.rx.bytes_per_second",
  );
  assertConfigError(
    () => load("[limits.client.rx]\nbytes_per_second = 10\nmax_burst_bytes = 0"),
    "limits.client.rx.max_burst_bytes",
  );
  assertConfigError(() => load('[limits.client.rx]\nbytes_per_second = "fast"'), "limits.client.rx.bytes_per_second");
});

Deno.test("validateConfig() reads [limits] accept_conn_limit and accept_conn_burst", () => {
  const { config } = load("[limits]\naccept_conn_limit = 2.5\naccept_conn_burst = 10");
  assert.equal(config.limits.acceptConnLimit, 2.5);
  assert.equal(config.limits.acceptConnBurst, 10);
  assertConfigError(() => load("[limits]\naccept_conn_burst = 10"), "limits.accept_conn_burst");
});

Deno.test("validateConfig() reads enable_relay (test_enable_relay_config)", () => {
  assert.equal(load("enable_relay = false").config.enableRelay, false);
  assert.equal(load("enable_relay = true").config.enableRelay, true);
  assert.equal(load("").config.enableRelay, true);
  assertConfigError(() => load('enable_relay = "no"'), "enable_relay");
});

Deno.test("validateConfig() with strict = false warns about unknown keys at every level and keeps going", () => {
  const { warnings, config } = load(`
    strict = false
    frobnicate = 1
    enable_stun = false
    [limits]
    accept_conn_limit = 1.0
    bogus = true
    [limits.client.rx]
    bytes_per_second = 10
    typo_burst = 1
    [tls]
    cert_mode = "Manual"
    contact = "me@example.org"
    extra = "x"
  `);
  assert.equal(config.limits.clientRx?.bytesPerSecond, 10);
  for (const key of ["frobnicate", "limits.bogus", "limits.client.rx.typo_burst", "tls.extra"]) {
    assert.ok(
      warnings.some((w) => w.startsWith(`${key}: unknown key, ignored`)),
      `${key} in ${JSON.stringify(warnings)}`,
    );
  }
  for (const known of ["strict", "enable_stun", "tls.contact", "limits.accept_conn_limit"]) {
    assert.ok(!warnings.some((w) => w.startsWith(`${known}: unknown`)), known);
  }
});

Deno.test("validateConfig() serves STUN by default on the HTTP IP, port 3478, like upstream", () => {
  const { config, warnings } = load('http_bind_addr = "10.0.0.1:80"\nenable_stun = true');
  assert.deepEqual(warnings, []);
  assert.equal(config.enableStun, true);
  assert.deepEqual(config.stunBindAddr, { hostname: "10.0.0.1", port: 3478 });
  assert.deepEqual(load('stun_bind_addr = "[::]:3479"').config.stunBindAddr, { hostname: "::", port: 3479 });
  assert.equal(load("enable_stun = false").config.enableStun, false);
});

Deno.test("validateConfig() names the key of a bad bind address", async (t) => {
  const cases: [string, string][] = [
    ['http_bind_addr = "nope"', "http_bind_addr"],
    ['http_bind_addr = "127.0.0.1"', "http_bind_addr"],
    ['http_bind_addr = "127.0.0.1:70000"', "http_bind_addr"],
    ['http_bind_addr = "::1:80"', "http_bind_addr"],
    ["http_bind_addr = 80", "http_bind_addr"],
    ['metrics_bind_addr = "[::1]"', "metrics_bind_addr"],
    ['stun_bind_addr = "x"', "stun_bind_addr"],
    ['[tls]\ncert_mode = "Manual"\nhttps_bind_addr = "localhost"', "tls.https_bind_addr"],
    ['[tls]\ncert_mode = "Manual"\nquic_bind_addr = ":7842"', "tls.quic_bind_addr"],
  ];
  for (const [toml, key] of cases) {
    await t.step(toml, () => assertConfigError(() => load(toml), key));
  }
});

Deno.test("parseBindAddr() reads IPv4, bracketed IPv6 and host names; formatBindAddr() writes them back", () => {
  for (
    const [text, want] of [
      ["127.0.0.1:3340", { hostname: "127.0.0.1", port: 3340 }],
      ["[::]:80", { hostname: "::", port: 80 }],
      ["[fe80::1%eth0]:443", { hostname: "fe80::1%eth0", port: 443 }],
      ["0.0.0.0:0", { hostname: "0.0.0.0", port: 0 }],
    ] as const
  ) {
    assert.deepEqual(parseBindAddr(text, "k"), want);
    assert.equal(formatBindAddr(want), text);
  }
});

Deno.test("configFromText() names file, line and column of a TOML syntax error and shows the line", () => {
  assert.throws(() => load("access = [unclosed"), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.key, /^test\.toml:1:\d+$/);
    return true;
  });
  // Before: `invalid TOML: Invalid TOML document: illegal character in key`, no position.
  assert.throws(() => load('enable_relay = true\nhttp bind_addr = "[::]:80"\n'), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(
      e.message,
      'test.toml:2:6: invalid TOML: illegal character in key\n  2 | http bind_addr = "[::]:80"\n    |      ^',
    );
    return true;
  });
});

Deno.test("validateConfig() reads key_cache_capacity and refuses negative values", () => {
  assert.equal(load("key_cache_capacity = 10").config.keyCacheCapacity, 10);
  assertConfigError(() => load("key_cache_capacity = -1"), "key_cache_capacity");
});

Deno.test("validateConfig() makes proxy mode use the upstream's login verdict", () => {
  const proxy = '[imap]\nmode = "proxy"\n[imap.upstream]\nhost = "127.0.0.1"\n';
  assert.equal(load(proxy).config.imap!.login, "upstream");
  assertConfigError(
    () => load(proxy.replace('mode = "proxy"', 'mode = "proxy"\nlogin = "any"')),
    "imap.login",
    /use "upstream"/,
  );
  const hash = "pbkdf2-sha256$100000$AAECAwQFBgcICQoLDA0ODw==$V/LC8HOXSNUWQZsGKohGZjI8WD6krhZVBKgfe1PGKgk=";
  assertConfigError(
    () =>
      load(proxy.replace('mode = "proxy"', 'mode = "proxy"\nlogin = "users"') + `[imap.users]\nalice = "${hash}"\n`),
    "imap.login",
    /logs users in at the upstream/,
  );
});

Deno.test("validateConfig() refuses a misspelled key instead of falling back to a public default", () => {
  // Before: a warning, and the relay listened on [::]:80 / IMAP on [::]:143 (all interfaces, plaintext).
  assertConfigError(
    () => load('http_bind_adr = "127.0.0.1:3340"'),
    "http_bind_adr",
    /unknown key \(did you mean `http_bind_addr`\?\).*strict = false.*--no-strict/,
  );
  assertConfigError(
    () => load('[imap]\nbind_adr = "127.0.0.1:1143"'),
    "imap.bind_adr",
    /did you mean `imap\.bind_addr`/,
  );
  // Case and dashes are forgiven in the suggestion; a key from another table names that table.
  assertConfigError(() => load('HTTP-Bind-Addr = "127.0.0.1:1"'), "HTTP-Bind-Addr", /did you mean `http_bind_addr`/);
  assertConfigError(() => load('bind_addr = "127.0.0.1:1"\n[imap]'), "bind_addr", /did you mean `imap\.bind_addr`/);
  // Nothing close: no suggestion.
  assertConfigError(() => load("frobnicate = 1"), "frobnicate", /^test\.toml: frobnicate: unknown key; fix the name/);
  // Several: the first is the error, the others come as warnings.
  assert.throws(() => load("aaa = 1\nbbb = 2\nccc = 3"), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.key, "aaa");
    assert.match(e.problem, /and 2 more above/);
    assert.deepEqual(e.warnings, ["bbb: unknown key", "ccc: unknown key"]);
    return true;
  });
});

Deno.test("validateConfig() makes unknown keys warnings with strict = false in the file or strict: false from the CLI", () => {
  const fromFile = load('strict = false\nhttp_bind_adr = "127.0.0.1:3340"');
  assert.deepEqual(fromFile.warnings, ["http_bind_adr: unknown key, ignored (did you mean `http_bind_addr`?)"]);
  assert.equal(fromFile.config.httpBindAddr.port, 80);
  const fromCli = load('http_bind_adr = "127.0.0.1:3340"', { strict: false });
  assert.equal(fromCli.warnings.length, 1);
  assertConfigError(() => load('strict = "no"'), "strict", /true or false/);
  assert.deepEqual(load("strict = true").warnings, []);
});

Deno.test("validateConfig() hands the typo that explains an error over with the error", () => {
  // Before: only `imap.login: "users" needs at least one entry in [imap.users]`.
  assert.throws(() => load('[imap]\nlogin = "users"\n[imap.user]\nbob = "x"'), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.key, "imap.login");
    assert.deepEqual(e.warnings, ["imap.user: unknown key (did you mean `imap.users`?)"]);
    return true;
  });
  // Keys the schema had not reached yet when it stopped are not called unknown.
  assert.throws(() => load('[imap]\nlogin = "users"\n[imap.limits]\nmax_sessions = 5'), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.warnings, []);
    return true;
  });
});

Deno.test("validateConfig() suggests within access.http too", () => {
  assertConfigError(
    () => load('[access.http]\nurl = "http://127.0.0.1/"\nbearer_tokn = "x"'),
    "access.http.bearer_tokn",
    /did you mean `access\.http\.bearer_token`/,
  );
});

Deno.test("validateConfig() reads the [imap.limits] hardening keys with safe defaults (issue 9)", () => {
  const base = '[imap]\nbind_addr = "127.0.0.1:0"\niroh_relay_url = "https://relay.example/"\n';
  const d = load(base).config.imap!.limits;
  assert.equal(d.loginTimeoutMs, 30_000);
  assert.equal(d.maxPendingReplyBytes, 1024 * 1024);
  assert.equal(d.passwordCheckConcurrency, 2);
  assert.equal(d.maxPendingPasswordChecks, 64);
  const set = load(
    base + "[imap.limits]\nlogin_timeout_secs = 10\nmax_pending_reply_bytes = 65536\n" +
      "password_check_concurrency = 1\nmax_pending_password_checks = 8\n",
  ).config.imap!.limits;
  assert.deepEqual(
    [set.loginTimeoutMs, set.maxPendingReplyBytes, set.passwordCheckConcurrency, set.maxPendingPasswordChecks],
    [10_000, 65536, 1, 8],
  );
  assertConfigError(
    () => load(base + "[imap.limits]\nmax_pending_reply_bytes = 100"),
    "imap.limits.max_pending_reply_bytes",
  );
  assertConfigError(
    () => load(base + "[imap.limits]\npassword_check_concurrency = 0"),
    "imap.limits.password_check_concurrency",
  );
  assertConfigError(
    () => load(base + "[imap.limits]\nmax_pending_password_checks = 0"),
    "imap.limits.max_pending_password_checks",
  );
});

Deno.test("validateConfig() fills the [limits] admission defaults (issue 9 contract)", () => {
  const { config } = load("");
  assert.deepEqual(config.limits.admission, {
    maxConnections: 16384,
    reserve: 256,
    maxPerSource: 256,
    perSecond: 32,
    burst: 128,
  });
  assert.equal(config.limits.tlsHandshakeTimeoutMs, 10_000);
  const imap = load('[imap]\niroh_relay_url = "https://r.example/"').config.imap!;
  assert.equal(imap.limits.maxSessionsPerSource, 32);
  assert.equal(imap.limits.sourceConnectsPerSec, 8);
  assert.equal(imap.limits.sourceConnectsBurst, 32);
});

Deno.test("validateConfig() reads [limits] and [imap.limits] admission keys without warnings", () => {
  const { config, warnings } = load(`
[limits]
max_connections = 1000
connection_reserve = 10
max_connections_per_source = 5
source_connects_per_sec = 0.5
source_connects_burst = 3
tls_handshake_timeout_secs = 2.5
[imap]
iroh_relay_url = "https://r.example/"
[imap.limits]
max_sessions_per_source = 4
source_connects_per_sec = 1
source_connects_burst = 2
`);
  assert.deepEqual(warnings, []);
  assert.deepEqual(config.limits.admission, {
    maxConnections: 1000,
    reserve: 10,
    maxPerSource: 5,
    perSecond: 0.5,
    burst: 3,
  });
  assert.equal(config.limits.tlsHandshakeTimeoutMs, 2500);
  assert.equal(config.imap!.limits.maxSessionsPerSource, 4);
  assert.equal(config.imap!.limits.sourceConnectsPerSec, 1);
  assert.equal(config.imap!.limits.sourceConnectsBurst, 2);
});

Deno.test("validateConfig() refuses bad admission limits, naming the key", () => {
  assertConfigError(() => load("[limits]\nmax_connections = 0"), "limits.max_connections");
  assertConfigError(() => load("[limits]\nmax_connections = 10\nconnection_reserve = 10"), "limits.connection_reserve");
  assertConfigError(() => load("[limits]\nmax_connections_per_source = 0"), "limits.max_connections_per_source");
  assertConfigError(() => load("[limits]\nsource_connects_per_sec = -1"), "limits.source_connects_per_sec");
  assertConfigError(() => load("[limits]\ntls_handshake_timeout_secs = 0"), "limits.tls_handshake_timeout_secs");
  assertConfigError(
    () => load('[imap]\niroh_relay_url = "https://r.example/"\n[imap.limits]\nmax_sessions_per_source = 0'),
    "imap.limits.max_sessions_per_source",
  );
});
