/**
 * @module
 * Discovery, the front door: iroh's pkarr relay and DNS server in this
 * binary (spec `discovery-and-mailbox.md` Part 1; what iroh-dns-server
 * does), so a self-hosted deployment needs nothing from n0.
 *
 * - `PUT/GET /pkarr/{z32}` and `/dns-query` (DoH) are {@link HttpRoute}s
 *   the relay listener and the edge handler serve;
 * - DNS on UDP and TCP at `dns_bind_addr`;
 * - packets in SQLite (`data_dir`) or Redis (several instances).
 *
 * Layout: `proto/` is pure (z-base-32, signed packet, zone logic, DNS
 * responder over npm `dns-packet`); `service.ts` is the shared core;
 * `pkarr_http.ts`, `doh.ts`, `dns_server.ts` are the transports;
 * `store_sqlite.ts`, `store_redis.ts` the backends.
 *
 * @example
 * ```ts
 * import { startDiscovery } from "./mod.ts";
 * const d = await startDiscovery({
 *   origins: ["dns.example.org"],
 *   dnsBindAddr: { hostname: "127.0.0.1", port: 0 },
 *   pkarrPutRateLimit: "disabled",
 *   evictionAgeSecs: 7 * 24 * 3600,
 *   store: { kind: "sqlite", dataDir: await Deno.makeTempDir() },
 * });
 * const route = d.routes.find((r) => r.prefix === "/pkarr/")!;
 * const res = await route.handle(new Request("http://x/pkarr/not-a-key"), { remote: "127.0.0.1" });
 * await res.body?.cancel();
 * await d.close();
 * if (res.status !== 400) throw new Error("expected 400");
 * ```
 */

import type { DiscoveryConfig } from "../config/mod.ts";
import { type Logger, silentLogger } from "../log/mod.ts";
import type { HttpRoute } from "../relay/mod.ts";
import { type DnsServer, startDnsServer } from "./dns_server.ts";
import { DOH_MAX_BODY, DOH_PATH, dohHandler } from "./doh.ts";
import { PKARR_MAX_BODY, PKARR_PREFIX, pkarrHandler } from "./pkarr_http.ts";
import { DiscoveryService } from "./service.ts";
import type { PacketStore } from "./store.ts";
import { RedisStore } from "./store_redis.ts";
import { SQLITE_FILE, SqliteStore } from "./store_sqlite.ts";

export { DiscoveryService } from "./service.ts";
export type { PacketStore } from "./store.ts";
export { type DnsServer, startDnsServer } from "./dns_server.ts";

/** A running discovery service. */
export interface DiscoveryHandle {
  /** The shared core (store, metrics). */
  service: DiscoveryService;
  /** `/pkarr/` and `/dns-query` for the relay listener and the edge handler. */
  routes: HttpRoute[];
  /** The DNS listener, unless started with `dns: false`. */
  dns?: DnsServer;
  /** OpenMetrics text (no `# EOF`). */
  metrics(): string;
  /** What `/healthz` reports about the store. */
  health(): { store: string; healthy: boolean; packets: number };
  /** Stops DNS, the sweep, and closes the store. */
  close(): Promise<void>;
}

/** Options of {@link startDiscovery}. */
export interface StartDiscoveryOptions {
  /** Logger. */
  log?: Logger;
  /** Start the UDP/TCP DNS listener (default true; the edge entry has none). */
  dns?: boolean;
  /** Clock, ms (tests). */
  now?: () => number;
}

/** Opens the configured store. */
export async function openStore(cfg: DiscoveryConfig["store"], log?: Logger): Promise<PacketStore> {
  if (cfg.kind === "sqlite") {
    await Deno.mkdir(cfg.dataDir, { recursive: true });
    return new SqliteStore(`${cfg.dataDir}/${SQLITE_FILE}`);
  }
  const store = new RedisStore({ target: cfg.redis, prefix: cfg.prefix, log: log ?? silentLogger });
  await store.start();
  return store;
}

/** The HTTP routes of a service. */
export function discoveryRoutes(service: DiscoveryService): HttpRoute[] {
  return [
    { prefix: PKARR_PREFIX, maxBodyBytes: PKARR_MAX_BODY, handle: pkarrHandler(service) },
    { prefix: DOH_PATH, maxBodyBytes: DOH_MAX_BODY, handle: dohHandler(service) },
  ];
}

/**
 * Opens the store, starts the eviction sweep and the DNS listener.
 * @throws {Error} the store cannot be opened or the DNS address cannot be bound
 */
export async function startDiscovery(cfg: DiscoveryConfig, opts: StartDiscoveryOptions = {}): Promise<DiscoveryHandle> {
  const store = await openStore(cfg.store, opts.log);
  const service = new DiscoveryService({
    store,
    zone: { origins: cfg.origins, ...(cfg.nameservers ? { nameservers: cfg.nameservers } : {}) },
    rateLimit: cfg.pkarrPutRateLimit,
    evictionAgeSecs: cfg.evictionAgeSecs,
    ...(opts.log ? { log: opts.log } : {}),
    ...(opts.now ? { now: opts.now } : {}),
  });
  let dns: DnsServer | undefined;
  try {
    if (opts.dns !== false) {
      dns = startDnsServer(service, {
        hostname: cfg.dnsBindAddr.hostname,
        port: cfg.dnsBindAddr.port,
        ...(opts.log ? { log: opts.log } : {}),
      });
    }
  } catch (e) {
    await service.close();
    throw e;
  }
  service.startSweep();
  opts.log?.info(
    `discovery: origins ${cfg.origins.map((o) => o || ".").join(", ")}; store ${store.kind}; pkarr at ${PKARR_PREFIX}`,
  );
  return {
    service,
    routes: discoveryRoutes(service),
    ...(dns ? { dns } : {}),
    metrics: () => service.metrics.render(),
    health: () => ({ store: store.kind, healthy: store.healthy(), packets: service.metrics.storePackets }),
    async close() {
      await dns?.close();
      await service.close();
    },
  };
}
