/**
 * @module
 * What a validated config will do on the network, for `check-config` and
 * for naming the listener behind an "address already in use": every TCP
 * listener it opens, and the relay URL clients will be told. Pure.
 *
 * A service that adds a listener adds one entry to {@link effectiveListeners}.
 */

import { type BindAddr, type Config, deriveRelayUrl } from "./schema.ts";

/** One listening socket the config opens. */
export interface EffectiveListener {
  /** What it serves, for people: "relay (HTTPS)", "IMAP", … */
  name: string;
  /** The config key that sets its address (or whose default it is). */
  key: string;
  /** Where it listens. */
  addr: BindAddr;
  /** URL scheme clients use on it (`udp` for STUN, `dns` for DNS over UDP and TCP). */
  scheme: "http" | "https" | "imap" | "imaps" | "udp" | "dns";
}

/** Every listener `config` opens (TCP, and UDP for STUN). */
export function effectiveListeners(config: Config): EffectiveListener[] {
  const out: EffectiveListener[] = [];
  const useTls = config.tls !== undefined && !config.tls.dangerousHttpOnly;
  if (config.enableRelay) {
    out.push({
      name: useTls ? "captive portal (HTTP)" : "relay (HTTP)",
      key: "http_bind_addr",
      addr: config.httpBindAddr,
      scheme: "http",
    });
    if (useTls) {
      out.push({ name: "relay (HTTPS)", key: "tls.https_bind_addr", addr: config.tls!.httpsBindAddr, scheme: "https" });
    }
  }
  if (config.enableStun) {
    out.push({ name: "STUN", key: "stun_bind_addr", addr: config.stunBindAddr, scheme: "udp" });
  }
  if (config.discovery) {
    out.push({
      name: "DNS (UDP+TCP)",
      key: "discovery.dns_bind_addr",
      addr: config.discovery.dnsBindAddr,
      scheme: "dns",
    });
  }
  if (config.enableMetrics) {
    out.push({ name: "metrics", key: "metrics_bind_addr", addr: config.metricsBindAddr, scheme: "http" });
  }
  const imap = config.imap;
  if (imap?.bindAddr) out.push({ name: "IMAP", key: "imap.bind_addr", addr: imap.bindAddr, scheme: "imap" });
  if (imap?.tlsBindAddr) {
    out.push({ name: "IMAPS", key: "imap.tls_bind_addr", addr: imap.tlsBindAddr, scheme: "imaps" });
  }
  return out;
}

/** The relay URL clients are told, and where it comes from. */
export interface ClientUrl {
  /** The URL. */
  url: string;
  /** How it is told or where it is set, for people. */
  source: string;
  /** Sent to clients by this service (IMAP METADATA), not only a suggestion for client settings. */
  advertised: boolean;
}

/**
 * The relay URL clients will be given: the one IMAP METADATA advertises
 * when `[imap]` is on, else the one derived from the relay listener and
 * `[tls] hostname` (what an operator should put in client settings).
 * Undefined when the relay is off and there is no `[imap]`.
 *
 * @param hostname this machine's host name, for wildcard listeners
 * @param relayAddr the address actually bound, when known (port 0)
 */
export function clientRelayUrl(config: Config, hostname: string, relayAddr?: BindAddr): ClientUrl | undefined {
  if (config.imap) {
    return {
      url: config.imap.irohRelayUrl,
      source: config.imap.irohRelayUrlDerived
        ? "advertised over IMAP METADATA; derived from the relay listener, imap.iroh_relay_url overrides it"
        : "advertised over IMAP METADATA (imap.iroh_relay_url)",
      advertised: true,
    };
  }
  if (!config.enableRelay) return undefined;
  const useTls = config.tls !== undefined && !config.tls.dangerousHttpOnly;
  const tls = config.tls && relayAddr && useTls ? { ...config.tls, httpsBindAddr: relayAddr } : config.tls;
  const http = relayAddr && !useTls ? relayAddr : config.httpBindAddr;
  return {
    url: deriveRelayUrl(tls, http, hostname),
    source: config.tls?.hostnames.length ? "from [tls] hostname" : "from the relay listener and this host's name",
    advertised: false,
  };
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * A warning when `url`'s host is a short name (no dot, not an IP literal)
 * or `localhost`: clients on other machines cannot resolve it.
 */
export function shortHostWarning(url: string): string | undefined {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return undefined;
  }
  if (host.startsWith("[") || IPV4.test(host)) return undefined;
  if (host !== "localhost" && host.includes(".")) return undefined;
  return `the relay URL ${url} uses the host name "${host}" without a domain: clients on other machines cannot ` +
    `resolve it; set [tls] hostname (or imap.iroh_relay_url) to the public name`;
}
