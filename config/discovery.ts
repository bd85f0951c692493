/**
 * @module
 * The `[discovery]` table: iroh's pkarr relay and DNS server in this binary
 * (`discovery/`). Key names follow iroh-dns-server's config where it has
 * one (`origins`, `dns_bind_addr`, `pkarr_put_rate_limit`,
 * `eviction_age_secs`, `data_dir`); pure, like the rest of `config/`.
 *
 * ```toml
 * [discovery]
 * origins = ["dns.example.org", "."]
 * dns_bind_addr = "0.0.0.0:53"
 * pkarr_put_rate_limit = "smart"     # behind a reverse proxy
 * store = "sqlite"                   # or "redis" with redis_url; data_dir defaults as [mailbox]'s
 * ```
 */

import { parseRedisUrl, type RedisTarget } from "../redis/mod.ts";
import { defaultDataDir } from "./mailbox.ts";
import { DEFAULT_REDIS_URL } from "./mesh.ts";
import { type BindAddr, ConfigError, type Reader } from "./reader.ts";

/** Where signed packets are kept. */
export type DiscoveryStoreConfig =
  | { kind: "sqlite"; dataDir: string }
  | { kind: "redis"; redis: RedisTarget; prefix: string };

/** `[discovery]`, validated. */
export interface DiscoveryConfig {
  /** Zone names, lowercase, no trailing dot; `""` stands for `"."`. In config order. */
  origins: string[];
  /** UDP and TCP DNS listener. */
  dnsBindAddr: BindAddr;
  /** Per-IP limit on `PUT /pkarr`: off, by peer address, or by forwarding headers. */
  pkarrPutRateLimit: "disabled" | "simple" | "smart";
  /** Packets whose signed timestamp is older than this are evicted, seconds. */
  evictionAgeSecs: number;
  /** Store backend. */
  store: DiscoveryStoreConfig;
  /** NS host names of the zones (SOA MNAME too); absent: `ns1.<origin>`. */
  nameservers?: string[];
}

/** Default `eviction_age_secs`: 7 days, as upstream. */
export const DEFAULT_EVICTION_AGE_SECS = 7 * 24 * 3600;
/** Default DNS port outside production (upstream's default). */
export const DEFAULT_DNS_PORT = 5300;
/** Default Redis key prefix. */
export const DEFAULT_DISCOVERY_REDIS_PREFIX = "iroh-dns";

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Checks a DNS name (no trailing dot) label by label. */
function isDnsName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && name.split(".").every((l) => LABEL.test(l));
}

/** Reads `[discovery]`; undefined when the table is absent. */
export function readDiscovery(
  r: Reader,
  readers: Reader[],
  ctx: { httpBindAddr: BindAddr; env: Record<string, string | undefined> },
): DiscoveryConfig | undefined {
  const d = r.table("discovery");
  if (!d) return undefined;
  readers.push(d);
  const rawOrigins = d.strings("origins");
  if (rawOrigins === undefined || rawOrigins.length === 0) {
    throw new ConfigError("discovery.origins", `is required: the zone names served, e.g. ["dns.example.org", "."]`);
  }
  const origins: string[] = [];
  for (const o of rawOrigins) {
    const l = o.toLowerCase();
    const n = l === "." ? "" : l.endsWith(".") ? l.slice(0, -1) : l;
    if (n !== "" && !isDnsName(n)) throw new ConfigError("discovery.origins", `"${o}" is not a DNS name`);
    if (origins.includes(n)) throw new ConfigError("discovery.origins", `"${o}" is listed twice`);
    origins.push(n);
  }
  const dnsBindAddr = d.addr("dns_bind_addr") ?? { hostname: ctx.httpBindAddr.hostname, port: DEFAULT_DNS_PORT };
  const pkarrPutRateLimit = d.oneOf("pkarr_put_rate_limit", ["disabled", "simple", "smart"] as const, "simple");
  const evictionAgeSecs = d.int("eviction_age_secs", { min: 1 }) ?? DEFAULT_EVICTION_AGE_SECS;
  const kind = d.oneOf("store", ["sqlite", "redis"] as const, "sqlite");
  const only = (k: string, wanted: string) => {
    if (d.has(k) && kind !== wanted) {
      throw new ConfigError(d.key(k), `only applies to store = "${wanted}" (store is "${kind}")`);
    }
  };
  only("redis_url", "redis");
  only("redis_key_prefix", "redis");
  only("data_dir", "sqlite");
  let store: DiscoveryStoreConfig;
  if (kind === "redis") {
    let redis: RedisTarget;
    try {
      redis = parseRedisUrl(d.str("redis_url") ?? DEFAULT_REDIS_URL);
    } catch (e) {
      throw new ConfigError("discovery.redis_url", (e as Error).message);
    }
    const prefix = d.str("redis_key_prefix") ?? DEFAULT_DISCOVERY_REDIS_PREFIX;
    if (!/^[A-Za-z0-9._:-]{1,64}$/.test(prefix)) {
      throw new ConfigError("discovery.redis_key_prefix", `expected 1 to 64 of A-Z a-z 0-9 . _ : -, got "${prefix}"`);
    }
    store = { kind, redis, prefix };
  } else {
    const dataDir = d.str("data_dir") ?? ctx.env["IROH_DNS_DATA_DIR"] ?? defaultDataDir(ctx.env);
    if (dataDir === "") throw new ConfigError("discovery.data_dir", "must not be empty");
    store = { kind, dataDir };
  }
  const ns = d.strings("nameservers");
  if (ns) {
    for (const n of ns) {
      if (!isDnsName(n.toLowerCase().replace(/\.$/, ""))) {
        throw new ConfigError("discovery.nameservers", `"${n}" is not a host name`);
      }
    }
  }
  return {
    origins,
    dnsBindAddr,
    pkarrPutRateLimit,
    evictionAgeSecs,
    store,
    ...(ns && ns.length > 0 ? { nameservers: ns.map((n) => n.toLowerCase().replace(/\.$/, "")) } : {}),
  };
}
