import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import { configFromText } from "./mod.ts";
import {
  type Config,
  ConfigError,
  formatBindAddr,
  meshConfigFromEnv,
  parseBindAddr,
  type SchemaEnv,
} from "./schema.ts";

/** Seeded-style fixed keys (upstream uses a ChaCha8-seeded key; any valid key will do). */
const ID1 = ed25519.getPublicKey(new Uint8Array(32).fill(1));
const ID2 = ed25519.getPublicKey(new Uint8Array(32).fill(2));

function load(text: string, env: SchemaEnv = {}): { config: Config; warnings: string[] } {
  return configFromText(text, "test.toml", env);
}

function assertConfigError(fn: () => unknown, key: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    assert.equal(e.key, key);
    assert.ok(e.message.startsWith(`${key}: `) || e.message.startsWith(`test.toml: ${key}: `), e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

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

Deno.test("validateConfig() reads every access form (test_access_config)", async (t) => {
  const cases: { name: string; toml: string; want: Config["access"] }[] = [
    { name: "everyone", toml: 'access = "everyone"', want: { mode: "everyone" } },
    {
      name: "dotted allowlist, hex",
      toml: `access.allowlist = [\n  "${keyHex(ID1)}",\n]`,
      want: { mode: "allowlist", keys: [ID1] },
    },
    {
      name: "dotted allowlist, base32",
      toml: `access.allowlist = ["${keyBase32(ID1)}", "${keyBase32(ID2).toUpperCase()}"]`,
      want: { mode: "allowlist", keys: [ID1, ID2] },
    },
    {
      name: "[access] table denylist",
      toml: `[access]\ndenylist = ["${keyHex(ID2)}"]`,
      want: { mode: "denylist", keys: [ID2] },
    },
    {
      name: "inline table denylist",
      toml: `access = { denylist = ["${keyHex(ID1)}"] }`,
      want: { mode: "denylist", keys: [ID1] },
    },
    {
      name: "dotted http url",
      toml: 'access.http.url = "https://example.com/foo/bar?boo=baz"',
      want: { mode: "http", url: "https://example.com/foo/bar?boo=baz" },
    },
    {
      name: "dotted http url and bearer_token",
      toml: 'access.http.url = "https://example.com/foo/bar?boo=baz"\naccess.http.bearer_token = "foo"',
      want: { mode: "http", url: "https://example.com/foo/bar?boo=baz", bearerToken: "foo" },
    },
    {
      name: "inline http table",
      toml: 'access.http = { url = "https://example.com/foo" }',
      want: { mode: "http", url: "https://example.com/foo" },
    },
    {
      name: "inline http table with bearer_token",
      toml: 'access.http = { url = "https://example.com/foo", bearer_token = "foo" }',
      want: { mode: "http", url: "https://example.com/foo", bearerToken: "foo" },
    },
    {
      name: "[access.http] table",
      toml: '[access.http]\nurl = "http://127.0.0.1:9/hook"',
      want: { mode: "http", url: "http://127.0.0.1:9/hook" },
    },
    {
      name: "http with max_in_flight (ours)",
      toml: '[access.http]\nurl = "http://127.0.0.1:9/hook"\nmax_in_flight = 8',
      want: { mode: "http", url: "http://127.0.0.1:9/hook", maxInFlight: 8 },
    },
    {
      name: "shared_token",
      toml: 'access.shared_token = ["a", "b"]',
      want: { mode: "shared_token", tokens: ["a", "b"] },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assert.deepEqual(load(c.toml).config.access, c.want));
  }
});

Deno.test("validateConfig() refuses bad access values, naming the key", async (t) => {
  const cases: [string, string, string][] = [
    ["unknown mode string", 'access = "nobody"', "access"],
    ["two modes", `access.allowlist = []\naccess.denylist = []`, "access"],
    ["unknown mode table", "access.whitelist = []", "access.whitelist"],
    ["invalid id", 'access.allowlist = ["nothex"]', "access.allowlist[0]"],
    // y = 2 is not on the curve, so no public key has this encoding.
    [
      "id that is not a curve point",
      `access.denylist = ["${keyHex(ID1)}", "02${"0".repeat(62)}"]`,
      "access.denylist[1]",
    ],
    ["ids not a list", 'access.allowlist = "abc"', "access.allowlist"],
    ["http without url", 'access.http.bearer_token = "x"', "access.http.url"],
    ["http url not a URL", 'access.http.url = "not a url"', "access.http.url"],
    ["http max_in_flight zero", 'access.http = { url = "http://h/", max_in_flight = 0 }', "access.http.max_in_flight"],
    ["access a number", "access = 3", "access"],
  ];
  for (const [name, toml, key] of cases) {
    await t.step(name, () => assertConfigError(() => load(toml), key));
  }
});

Deno.test("validateConfig() rejects an empty shared token list or an empty token (test_access_token_empty_is_rejected)", () => {
  assertConfigError(() => load("access.shared_token = []"), "access.shared_token");
  assertConfigError(() => load('access.shared_token = ["ok", ""]'), "access.shared_token[1]");
});

Deno.test("validateConfig() lets IROH_RELAY_ACCESS_TOKEN replace the access policy, and refuses it empty", () => {
  const env = { env: { IROH_RELAY_ACCESS_TOKEN: "t0k" } };
  assert.deepEqual(load('access = "everyone"', env).config.access, { mode: "shared_token", tokens: ["t0k"] });
  assert.deepEqual(load('access.shared_token = ["a"]', env).config.access, { mode: "shared_token", tokens: ["t0k"] });
  assertConfigError(() => load("", { env: { IROH_RELAY_ACCESS_TOKEN: "" } }), "IROH_RELAY_ACCESS_TOKEN");
});

Deno.test("validateConfig() lets IROH_RELAY_HTTP_BEARER_TOKEN set the http hook token", () => {
  const env = { env: { IROH_RELAY_HTTP_BEARER_TOKEN: "from-env" } };
  assert.deepEqual(load('access.http.url = "http://h/"', env).config.access, {
    mode: "http",
    url: "http://h/",
    bearerToken: "from-env",
  });
});

Deno.test("regression: IROH_RELAY_HTTP_BEARER_TOKEN overrides a bearer_token also set in the file", () => {
  const env = { env: { IROH_RELAY_HTTP_BEARER_TOKEN: "from-env" } };
  const { config } = load('access.http = { url = "http://h/", bearer_token = "from-file" }', env);
  assert.deepEqual(config.access, { mode: "http", url: "http://h/", bearerToken: "from-env" });
});

Deno.test("validateConfig() reads enable_relay (test_enable_relay_config)", () => {
  assert.equal(load("enable_relay = false").config.enableRelay, false);
  assert.equal(load("enable_relay = true").config.enableRelay, true);
  assert.equal(load("").config.enableRelay, true);
  assertConfigError(() => load('enable_relay = "no"'), "enable_relay");
});

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

Deno.test("validateConfig() has no [mesh] unless the table is present", () => {
  assert.equal(load("").config.mesh, undefined);
});

Deno.test("validateConfig() reads [mesh] for Redis with defaults, credentials and an environment override", () => {
  assert.deepEqual(load('[mesh]\nbackend = "redis"').config.mesh, {
    backend: "redis",
    prefix: "iroh-relay",
    redis: { tls: false, hostname: "127.0.0.1", port: 6379, db: 0 },
  });
  const { config, warnings } = load(`
    [mesh]
    backend = "redis"
    redis_url = "rediss://relay:pw@cache.example:6380/2"
    channel_prefix = "relay-a"
    instance_id = "host-1"
  `);
  assert.deepEqual(warnings, []);
  assert.deepEqual(config.mesh, {
    backend: "redis",
    prefix: "relay-a",
    instanceId: "host-1",
    redis: { tls: true, hostname: "cache.example", port: 6380, username: "relay", password: "pw", db: 2 },
  });
  const env = { env: { IROH_RELAY_MESH_REDIS_URL: "redis://:from-env@10.0.0.5" } };
  const overridden = load('[mesh]\nbackend = "redis"\nredis_url = "redis://file"', env);
  assert.deepEqual(overridden.warnings, []);
  assert.equal(overridden.config.mesh?.backend === "redis" && overridden.config.mesh.redis.password, "from-env");
});

Deno.test("validateConfig() reads [mesh] for Deno KV: platform database by default, or a file and a poll", () => {
  assert.deepEqual(load('[mesh]\nbackend = "kv"').config.mesh, { backend: "kv", prefix: "iroh-relay" });
  assert.deepEqual(load('[mesh]\nbackend = "kv"\nkv_path = "/var/lib/relay/mesh.sqlite"\nkv_poll_ms = 0').config.mesh, {
    backend: "kv",
    prefix: "iroh-relay",
    kvPath: "/var/lib/relay/mesh.sqlite",
    pollMs: 0,
  });
});

Deno.test("validateConfig() refuses invalid [mesh] keys with one line naming the key", () => {
  assertConfigError(() => load("[mesh]"), "mesh.backend", /required/);
  assertConfigError(() => load('[mesh]\nbackend = "etcd"'), "mesh.backend", /"redis", "kv"/);
  assertConfigError(() => load('[mesh]\nbackend = "redis"\nredis_url = "http://h"'), "mesh.redis_url", /redis:\/\//);
  assertConfigError(() => load('[mesh]\nbackend = "redis"\nredis_url = "redis://h/x"'), "mesh.redis_url", /database/);
  assertConfigError(() => load('[mesh]\nbackend = "kv"\nredis_url = "redis://h"'), "mesh.redis_url", /only applies/);
  assertConfigError(() => load('[mesh]\nbackend = "redis"\nkv_path = "x"'), "mesh.kv_path", /only applies/);
  assertConfigError(() => load('[mesh]\nbackend = "kv"\nkv_path = ""'), "mesh.kv_path", /must not be empty/);
  assertConfigError(() => load('[mesh]\nbackend = "kv"\nkv_poll_ms = -1'), "mesh.kv_poll_ms", /at least 0/);
  assertConfigError(() => load('[mesh]\nbackend = "kv"\ninstance_id = "a b"'), "mesh.instance_id");
  assertConfigError(() => load('[mesh]\nbackend = "kv"\nchannel_prefix = ""'), "mesh.channel_prefix");
  assertConfigError(
    () => load('[mesh]\nbackend = "redis"', { env: { IROH_RELAY_MESH_REDIS_URL: "nope" } }),
    "IROH_RELAY_MESH_REDIS_URL",
    /not a URL/,
  );
});

Deno.test("validateConfig() never repeats a Redis password in an error", () => {
  assert.throws(() => load('[mesh]\nbackend = "redis"\nredis_url = "redis://:hunter2@h/x?y"'), (e: Error) => {
    assert.doesNotMatch(e.message, /hunter2/);
    return true;
  });
});

Deno.test("validateConfig() refuses unknown [mesh] keys, or warns with --no-strict", () => {
  assertConfigError(() => load('[mesh]\nbackend = "kv"\nkv_pth = "x"'), "mesh.kv_pth", /did you mean `mesh\.kv_path`/);
  assert.deepEqual(load('[mesh]\nbackend = "kv"\nkv_pth = "x"', { strict: false }).warnings, [
    "mesh.kv_pth: unknown key, ignored (did you mean `mesh.kv_path`?)",
  ]);
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

Deno.test("meshConfigFromEnv() builds [mesh] from RELAY_MESH* variables, naming the variable in errors", () => {
  assert.equal(meshConfigFromEnv({}), undefined);
  assert.deepEqual(meshConfigFromEnv({ RELAY_MESH: "kv" }), { backend: "kv", prefix: "iroh-relay" });
  assert.deepEqual(
    meshConfigFromEnv({
      RELAY_MESH: "kv",
      RELAY_MESH_KV_PATH: "/tmp/m",
      RELAY_MESH_KV_POLL_MS: "15",
      RELAY_MESH_PREFIX: "p",
    }),
    { backend: "kv", prefix: "p", kvPath: "/tmp/m", pollMs: 15 },
  );
  assert.equal(meshConfigFromEnv({ RELAY_MESH: "redis", RELAY_MESH_REDIS_URL: "redis://h:1" })?.backend, "redis");
  assertConfigError(() => meshConfigFromEnv({ RELAY_MESH: "etcd" }), "RELAY_MESH");
  assertConfigError(() => meshConfigFromEnv({ RELAY_MESH: "kv", RELAY_MESH_KV_POLL_MS: "x" }), "RELAY_MESH_KV_POLL_MS");
  assertConfigError(
    () => meshConfigFromEnv({ RELAY_MESH: "kv", RELAY_MESH_INSTANCE_ID: "a b" }),
    "RELAY_MESH_INSTANCE_ID",
  );
  assertConfigError(
    () => meshConfigFromEnv({ RELAY_MESH: "kv", RELAY_MESH_REDIS_URL: "redis://h" }),
    "RELAY_MESH_REDIS_URL",
    /only applies/,
  );
});

/** 64 hex characters, written here so the config tests need nothing from relay/. */
function keyHex(key: Uint8Array): string {
  return Array.from(key, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** RFC 4648 base32, lowercase, no padding (52 characters for a key). */
function keyBase32(key: Uint8Array): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const b of key) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += alphabet[(acc >>> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += alphabet[(acc << (5 - bits)) & 31];
  return out;
}

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
