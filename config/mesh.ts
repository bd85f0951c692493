/**
 * @module
 * The `[mesh]` table (several relay instances serving one relay URL, linked
 * through Redis pub/sub or Deno KV) and its environment form for the edge
 * entry (`RELAY_MESH*`). Pure.
 */

import { parseRedisUrl, type RedisTarget } from "../redis/mod.ts";
import { ConfigError, Reader, type Table } from "./reader.ts";

/** Settings both mesh backends share. */
interface MeshCommon {
  /** Prefix of Redis channels or KV keys: relays sharing one Redis or database need distinct ones. */
  prefix: string;
  /** This instance's id (default: random per start). */
  instanceId?: string;
}

/**
 * `[mesh]`: several relay instances serving one relay URL (see
 * `relay/server/mesh.ts`), linked through Redis pub/sub or Deno KV.
 */
export type MeshConfig =
  | MeshCommon & {
    /** Redis pub/sub (self-hosted scale-out). */
    backend: "redis";
    /** Server and credentials from `redis_url` (or `IROH_RELAY_MESH_REDIS_URL`). */
    redis: RedisTarget;
  }
  | MeshCommon & {
    /** Deno KV (the new Deno Deploy; or a local file shared by processes). */
    backend: "kv";
    /** Local KV file; absent: the platform's default database. */
    kvPath?: string;
    /** Poll of the wake key, ms (0: watch only); absent: the backend's default. */
    pollMs?: number;
  };

/** Default `[mesh] channel_prefix`. */
export const DEFAULT_MESH_PREFIX = "iroh-relay";
/** Default `[mesh] redis_url`. */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/** Instance ids and channel prefixes: short, printable, safe in channel names, KV keys and log lines. */
export const MESH_NAME = /^[A-Za-z0-9._:-]{1,64}$/;

/** Reads `[mesh]`; undefined when the table is absent. */
export function readMesh(
  r: Reader,
  readers: Reader[],
  env: Record<string, string | undefined>,
): MeshConfig | undefined {
  const m = r.table("mesh");
  if (!m) return undefined;
  readers.push(m);
  if (!m.has("backend")) throw new ConfigError("mesh.backend", `is required in [mesh]: "redis" or "kv"`);
  const backend = m.oneOf("backend", ["redis", "kv"] as const, "redis");
  const name = (k: string): string | undefined => {
    const v = m.str(k);
    if (v !== undefined && !MESH_NAME.test(v)) {
      throw new ConfigError(m.key(k), `expected 1 to 64 of A-Z a-z 0-9 . _ : -, got "${v}"`);
    }
    return v;
  };
  const common: MeshCommon = { prefix: name("channel_prefix") ?? DEFAULT_MESH_PREFIX };
  const instanceId = name("instance_id");
  if (instanceId !== undefined) common.instanceId = instanceId;
  const only = (k: string, wanted: MeshConfig["backend"]) => {
    if (m.has(k) && backend !== wanted) {
      throw new ConfigError(m.key(k), `only applies to backend = "${wanted}" (backend is "${backend}")`);
    }
  };
  only("redis_url", "redis");
  only("kv_path", "kv");
  only("kv_poll_ms", "kv");
  if (backend === "redis") {
    // Read the file's URL even when the environment overrides it, so it is not taken for an unknown key.
    const fileUrl = m.str("redis_url");
    const fromEnv = env["IROH_RELAY_MESH_REDIS_URL"];
    const key = fromEnv !== undefined ? "IROH_RELAY_MESH_REDIS_URL" : "mesh.redis_url";
    let redis: RedisTarget;
    try {
      redis = parseRedisUrl(fromEnv ?? fileUrl ?? DEFAULT_REDIS_URL);
    } catch (e) {
      throw new ConfigError(key, (e as Error).message);
    }
    return { ...common, backend, redis };
  }
  const kvPath = m.str("kv_path");
  if (kvPath === "") throw new ConfigError("mesh.kv_path", "must not be empty (omit it for the platform's database)");
  const pollMs = m.int("kv_poll_ms", { min: 0, max: 60_000 });
  return {
    ...common,
    backend,
    ...(kvPath !== undefined ? { kvPath } : {}),
    ...(pollMs !== undefined ? { pollMs } : {}),
  };
}

/**
 * `[mesh]` from the environment, for the edge entry (`deploy/edge.ts`),
 * where a config file is optional: `RELAY_MESH` = `kv` or `redis`, with
 * `RELAY_MESH_KV_PATH`, `RELAY_MESH_KV_POLL_MS`, `RELAY_MESH_REDIS_URL`,
 * `RELAY_MESH_PREFIX`, `RELAY_MESH_INSTANCE_ID`. Undefined without `RELAY_MESH`.
 * @throws {ConfigError} naming the variable
 */
export function meshConfigFromEnv(env: Record<string, string | undefined>): MeshConfig | undefined {
  const backend = env["RELAY_MESH"];
  if (backend === undefined || backend === "") return undefined;
  if (backend !== "kv" && backend !== "redis") {
    throw new ConfigError("RELAY_MESH", `expected "kv" or "redis", got "${backend}"`);
  }
  const table: Table = { backend };
  const names: [string, string][] = [
    ["RELAY_MESH_PREFIX", "channel_prefix"],
    ["RELAY_MESH_INSTANCE_ID", "instance_id"],
    ["RELAY_MESH_KV_PATH", "kv_path"],
    ["RELAY_MESH_REDIS_URL", "redis_url"],
  ];
  for (const [v, k] of names) if (env[v] !== undefined) table[k] = env[v];
  const poll = env["RELAY_MESH_KV_POLL_MS"];
  if (poll !== undefined) {
    if (!/^\d{1,5}$/.test(poll)) {
      throw new ConfigError("RELAY_MESH_KV_POLL_MS", `expected a number of ms, got "${poll}"`);
    }
    table["kv_poll_ms"] = Number(poll);
  }
  const byKey = new Map(names.map(([v, k]) => [`mesh.${k}`, v]));
  byKey.set("mesh.kv_poll_ms", "RELAY_MESH_KV_POLL_MS");
  try {
    return readMesh(new Reader({ mesh: table }, ""), [], {});
  } catch (e) {
    // Name the variable the operator set, not the table key it stands for.
    if (e instanceof ConfigError) throw new ConfigError(byKey.get(e.key) ?? e.key, e.problem);
    throw e;
  }
}
