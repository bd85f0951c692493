import assert from "node:assert/strict";
import { configFromText } from "./mod.ts";

Deno.test("[discovery] defaults: DNS on the http host :5300, simple rate limit, 7 days, SQLite in the default data directory", () => {
  const { config } = configFromText(
    'http_bind_addr = "127.0.0.1:80"\n[discovery]\norigins = ["DNS.Example.org.", "."]',
    "t",
  );
  assert.deepEqual(config.discovery, {
    origins: ["dns.example.org", ""],
    dnsBindAddr: { hostname: "127.0.0.1", port: 5300 },
    pkarrPutRateLimit: "simple",
    evictionAgeSecs: 604800,
    store: { kind: "sqlite", dataDir: "./data" },
  });
  assert.equal(configFromText("", "t").config.discovery, undefined);
});

Deno.test("[discovery] data_dir falls back to IROH_DNS_DATA_DIR, then $STATE_DIRECTORY; redis store reads redis_url and the key prefix", () => {
  const env = { env: { IROH_DNS_DATA_DIR: "/var/lib/x" } };
  assert.deepEqual(configFromText('[discovery]\norigins = ["."]', "t", env).config.discovery!.store, {
    kind: "sqlite",
    dataDir: "/var/lib/x",
  });
  assert.deepEqual(
    configFromText('[discovery]\norigins = ["."]', "t", { env: { STATE_DIRECTORY: "/var/lib/ird" } }).config.discovery!
      .store,
    { kind: "sqlite", dataDir: "/var/lib/ird" },
  );
  const r = configFromText(
    '[discovery]\norigins = ["."]\nstore = "redis"\nredis_url = "redis://:pw@10.0.0.5:6380/2"\nredis_key_prefix = "eu"',
    "t",
  ).config.discovery!.store;
  assert.equal(r.kind, "redis");
  if (r.kind === "redis") {
    assert.deepEqual([r.redis.hostname, r.redis.port, r.redis.password, r.redis.db, r.prefix], [
      "10.0.0.5",
      6380,
      "pw",
      2,
      "eu",
    ]);
  }
});

Deno.test("[discovery] unknown keys are refused, or warned about with strict = false", () => {
  assert.throws(
    () => configFromText('[discovery]\norigins = ["."]\nzone_store = 1', "t"),
    /discovery\.zone_store: unknown key/,
  );
  const { warnings } = configFromText('strict = false\n[discovery]\norigins = ["."]\nzone_store = 1', "t");
  assert.deepEqual(warnings, ["discovery.zone_store: unknown key, ignored"]);
  // A misspelled key names the right one.
  assert.throws(
    () => configFromText('[discovery]\norigins = ["."]\ndns_bind_adr = "x:1"', "t"),
    /did you mean `discovery\.dns_bind_addr`/,
  );
});
