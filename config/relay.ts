/**
 * @module
 * The relay's keys: the top level of upstream's `iroh-relay.toml` (listeners,
 * STUN, metrics, key cache), `[limits]` (with our admission keys) and, through
 * their own files, `access` and `[tls]`. Pure.
 */

import { type AccessConfig, readAccess } from "./access.ts";
import { type BindAddr, ConfigError, type Reader } from "./reader.ts";
import { readTls, type TlsConfig } from "./tls.ts";

/**
 * Connection admission of one listener group (`[limits]` for the relay,
 * `[imap.limits]` for IMAP): the shape `admission/`'s gate takes.
 */
export interface AdmissionConfig {
  /** Connections open at once, all sources. */
  maxConnections: number;
  /** Slots kept for sources holding fewer than 4 connections. */
  reserve: number;
  /** Connections open at once per IPv4 address / IPv6 /64. */
  maxPerSource: number;
  /** New connections per second per source (0: no rate limit). */
  perSecond: number;
  /** Burst of new connections per source. */
  burst: number;
}

/** Defaults of `[limits]` admission (CONTRACT, issue 9). */
export const RELAY_ADMISSION_DEFAULTS: Readonly<AdmissionConfig> = {
  maxConnections: 16384,
  reserve: 256,
  maxPerSource: 256,
  perSecond: 32,
  burst: 128,
};

/** Default TLS handshake deadline, ms. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Default STUN port (upstream `DEFAULT_STUN_PORT`). */
export const DEFAULT_STUN_PORT = 3478;

/** `[limits]`, validated. */
export interface RelayLimits {
  /** Per-source and global admission on the relay port(s); always set (defaults below). */
  admission: AdmissionConfig;
  /** TLS handshake deadline on the relay and IMAPS listeners, ms (`tls_handshake_timeout_secs`). */
  tlsHandshakeTimeoutMs: number;
  /** New connections per second per listener (token bucket). */
  acceptConnLimit?: number;
  /** Burst of new connections. */
  acceptConnBurst?: number;
  /** `[limits.client.rx]`. */
  clientRx?: { bytesPerSecond: number; maxBurstBytes?: number };
}

/** The relay's part of the validated configuration. */
export interface RelayConfig {
  /** Run the relay (upstream 1.x honours `false`). */
  enableRelay: boolean;
  /** Plain HTTP listener: the relay, or only the captive portal when TLS is on. */
  httpBindAddr: BindAddr;
  /** STUN server (0.35 clients use it to learn their public address). */
  enableStun: boolean;
  /** STUN UDP listener (default: the IP of `http_bind_addr`, port 3478). */
  stunBindAddr: BindAddr;
  /** QUIC address discovery (parsed, not served). */
  enableQuicAddrDiscovery: boolean;
  /** Serve Prometheus metrics. */
  enableMetrics: boolean;
  /** Metrics listener. */
  metricsBindAddr: BindAddr;
  /** Key validity cache size. */
  keyCacheCapacity: number;
  /** Access policy. */
  access: AccessConfig;
  /** `[limits]`. */
  limits: RelayLimits;
  /** `[tls]`, if present. */
  tls?: TlsConfig;
}

/**
 * Reads the relay's keys, in the order upstream documents them.
 * @param ctx `--dev` and the environment
 */
export function readRelay(
  r: Reader,
  readers: Reader[],
  warnings: string[],
  ctx: { dev: boolean | undefined; env: Record<string, string | undefined> },
): RelayConfig {
  const env = ctx.env;

  const enableRelay = r.bool("enable_relay", true);
  const httpBindAddr = r.addr("http_bind_addr") ?? { hostname: "::", port: ctx.dev ? 3340 : 80 };
  const enableStun = r.bool("enable_stun", true);
  const stunBindAddr = r.addr("stun_bind_addr") ?? { hostname: httpBindAddr.hostname, port: DEFAULT_STUN_PORT };
  const enableQuicAddrDiscovery = r.bool("enable_quic_addr_discovery", false);
  let enableMetrics = r.bool("enable_metrics", true);
  const metricsBindAddr = r.addr("metrics_bind_addr") ?? { hostname: httpBindAddr.hostname, port: 9090 };
  const keyCacheCapacity = r.int("key_cache_capacity", { min: 0 }) ?? 1024 * 1024;

  const access = readAccess(r, env);
  const limits = readLimits(r, readers);
  const tls = readTls(r, readers, warnings, { enableRelay, httpBindAddr, dev: ctx.dev, env });
  if (enableQuicAddrDiscovery) {
    if (!tls) throw new ConfigError("enable_quic_addr_discovery", "requires a [tls] section");
    warnings.push(
      "enable_quic_addr_discovery: QUIC address discovery is not served by this relay; clients fall back to /ping probes",
    );
  }
  if (ctx.dev) enableMetrics = false;

  return {
    enableRelay,
    httpBindAddr,
    enableStun,
    stunBindAddr,
    enableQuicAddrDiscovery,
    enableMetrics,
    metricsBindAddr,
    keyCacheCapacity,
    access,
    limits,
    ...(tls ? { tls } : {}),
  };
}

/** Reads `[limits]`; the defaults when absent. */
function readLimits(r: Reader, readers: Reader[]): RelayLimits {
  const limits: RelayLimits = {
    admission: { ...RELAY_ADMISSION_DEFAULTS },
    tlsHandshakeTimeoutMs: TLS_HANDSHAKE_TIMEOUT_MS,
  };
  const lim = r.table("limits");
  if (lim) {
    readers.push(lim);
    const adm = limits.admission;
    adm.maxConnections = lim.int("max_connections", { min: 1 }) ?? adm.maxConnections;
    adm.reserve = lim.int("connection_reserve", { min: 0 }) ?? adm.reserve;
    adm.maxPerSource = lim.int("max_connections_per_source", { min: 1 }) ?? adm.maxPerSource;
    adm.perSecond = lim.num("source_connects_per_sec", { min: 0 }) ?? adm.perSecond;
    adm.burst = lim.int("source_connects_burst", { min: 1 }) ?? adm.burst;
    if (adm.reserve >= adm.maxConnections) {
      throw new ConfigError(
        "limits.connection_reserve",
        `must be less than limits.max_connections (${adm.maxConnections})`,
      );
    }
    const hs = lim.num("tls_handshake_timeout_secs", { min: 0.05 });
    if (hs !== undefined) limits.tlsHandshakeTimeoutMs = hs * 1000;
    const acl = lim.num("accept_conn_limit", { min: 0 });
    const acb = lim.int("accept_conn_burst", { min: 1 });
    if (acl !== undefined) limits.acceptConnLimit = acl;
    if (acb !== undefined) limits.acceptConnBurst = acb;
    if (acb !== undefined && acl === undefined) {
      throw new ConfigError("limits.accept_conn_burst", "needs limits.accept_conn_limit");
    }
    const client = lim.table("client");
    if (client) {
      readers.push(client);
      const rx = client.table("rx");
      if (rx) {
        readers.push(rx);
        const bps = rx.int("bytes_per_second", { min: 1, max: 0xffffffff });
        const burst = rx.int("max_burst_bytes", { min: 1, max: 0xffffffff });
        if (burst !== undefined && bps === undefined) {
          throw new ConfigError("limits.client.rx.max_burst_bytes", "needs limits.client.rx.bytes_per_second");
        }
        if (bps !== undefined) {
          limits.clientRx = burst === undefined
            ? { bytesPerSecond: bps }
            : { bytesPerSecond: bps, maxBurstBytes: burst };
        }
      }
    }
  }
  return limits;
}

/** Builds the default relay URL from the relay's own listener and public name. */
export function deriveRelayUrl(tls: TlsConfig | undefined, httpBindAddr: BindAddr, hostname: string): string {
  const useTls = tls !== undefined && !tls.dangerousHttpOnly;
  const addr = useTls ? tls!.httpsBindAddr : httpBindAddr;
  const wildcard = addr.hostname === "::" || addr.hostname === "0.0.0.0";
  let host = tls?.hostnames[0] ?? (wildcard ? hostname : addr.hostname);
  if (host.includes(":")) host = `[${host}]`;
  const scheme = useTls ? "https" : "http";
  const defaultPort = useTls ? 443 : 80;
  return `${scheme}://${host}${addr.port === defaultPort ? "" : `:${addr.port}`}/`;
}
