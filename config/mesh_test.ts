/** `[mesh]` and its environment form for the edge entry (`mesh.ts`). */

import assert from "node:assert/strict";
import { assertConfigError, load } from "./test_support.ts";
import { meshConfigFromEnv } from "./schema.ts";

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
