/**
 * @module
 * The `[imap]` table and its sub-tables `[imap.metadata]`, `[imap.users]`,
 * `[imap.upstream]`, `[imap.limits]`: the METADATA discovery listener
 * (`imap_metadata/`), standalone or as a proxy. Pure.
 */

import { type BindAddr, ConfigError, type Reader, show } from "./reader.ts";
import { deriveRelayUrl } from "./relay.ts";
import type { TlsConfig } from "./tls.ts";

/** `[imap.upstream]`: the real IMAP server behind the proxy. */
export interface ImapUpstream {
  /** Host name or IP. */
  host: string;
  /** Port (default 993 with TLS, 143 without). */
  port: number;
  /** Connect with implicit TLS. */
  tls: boolean;
  /** Check the upstream certificate (on by default). */
  verifyCertificate: boolean;
  /** Extra CA certificate PEM file to trust (e.g. a self-signed upstream). */
  caFile?: string;
  /** TLS server name if not `host`. */
  serverName?: string;
}

/** `[imap.limits]`. */
export interface ImapLimits {
  /** Concurrent sessions; more are greeted with `* BYE` and closed. */
  maxSessions: number;
  /** Concurrent sessions per IPv4 address / IPv6 /64. */
  maxSessionsPerSource: number;
  /** New connections per second per source (0: no rate limit). */
  sourceConnectsPerSec: number;
  /** Burst of new connections per source. */
  sourceConnectsBurst: number;
  /** Longest command line, bytes. */
  maxLineBytes: number;
  /** Largest literal a client may announce in standalone mode, bytes. */
  maxLiteralBytes: number;
  /** Largest literal relayed in proxy mode (APPEND), bytes. */
  maxProxyLiteralBytes: number;
  /** Close a session idle this long (RFC 3501: at least 30 min), ms. */
  idleTimeoutMs: number;
  /** Close a session not logged in after this long, ms. */
  loginTimeoutMs: number;
  /** Delay before answering a failed login, ms. */
  failedLoginDelayMs: number;
  /** Proxy mode: bytes of replies and commands held while the upstream has not answered; over it, `* BYE`. */
  maxPendingReplyBytes: number;
  /** Password checks (PBKDF2) running at once. */
  passwordCheckConcurrency: number;
  /** Password checks waiting for a place; more are answered `NO [UNAVAILABLE]` at once. */
  maxPendingPasswordChecks: number;
}

/** `[imap]`: the METADATA discovery listener. */
export interface ImapConfig {
  /** Plain IMAP listener, if any. */
  bindAddr?: BindAddr;
  /** Implicit-TLS IMAP listener, if any. */
  tlsBindAddr?: BindAddr;
  /** Certificate for `tls_bind_addr` (default: `[tls]` files). */
  certPath?: string;
  /** Key for `tls_bind_addr` (default: `[tls]` files). */
  keyPath?: string;
  /** `standalone` answers everything itself; `proxy` fronts `[imap.upstream]`. */
  mode: "standalone" | "proxy";
  /** URL advertised as `/shared/vendor/deltachat/irohrelay`. */
  irohRelayUrl: string;
  /** True if {@link irohRelayUrl} was derived rather than configured. */
  irohRelayUrlDerived: boolean;
  /** Server entries by lowercase name (`/shared/comment`, `/shared/admin`, …). */
  entries: Map<string, string>;
  /** Who may log in. */
  login: "any" | "users" | "upstream";
  /** `[imap.users]`: user name → password hash. */
  users: Map<string, string>;
  /** `[imap.upstream]`, required in proxy mode. */
  upstream?: ImapUpstream;
  /** `[imap.limits]`. */
  limits: ImapLimits;
}

/** Password hash format accepted in `[imap.users]` (see `main.ts hash-password`). */
export const PASSWORD_HASH = /^pbkdf2-sha256\$(\d+)\$([A-Za-z0-9+/=_-]+)\$([A-Za-z0-9+/=_-]+)$/;

/** Keys of the server METADATA namespace we accept in `[imap.metadata]`. */
const ENTRY_NAME = /^\/shared(\/[\x21-\x7e]+)+$/;

/** Reads `[imap]`; undefined when the table is absent. */
export function readImap(
  r: Reader,
  readers: Reader[],
  ctx: { tls: TlsConfig | undefined; httpBindAddr: BindAddr; hostname: string },
): ImapConfig | undefined {
  const i = r.table("imap");
  if (!i) return undefined;
  readers.push(i);
  const mode = i.oneOf("mode", ["standalone", "proxy"] as const, "standalone");
  let bindAddr = i.addr("bind_addr");
  const tlsBindAddr = i.addr("tls_bind_addr");
  const certPath = i.str("cert_path") ?? ctx.tls?.certPath;
  const keyPath = i.str("key_path") ?? ctx.tls?.keyPath;
  if (tlsBindAddr && (!certPath || !keyPath)) {
    throw new ConfigError("imap.tls_bind_addr", "needs imap.cert_path and imap.key_path, or a [tls] section");
  }
  if (!bindAddr && !tlsBindAddr) bindAddr = { hostname: "::", port: 143 };

  const configuredUrl = i.str("iroh_relay_url");
  let irohRelayUrl: string;
  if (configuredUrl !== undefined) {
    let u: URL;
    try {
      u = new URL(configuredUrl);
    } catch {
      throw new ConfigError("imap.iroh_relay_url", `"${configuredUrl}" is not a URL`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new ConfigError("imap.iroh_relay_url", `must start with http:// or https://, got "${configuredUrl}"`);
    }
    irohRelayUrl = configuredUrl;
  } else {
    irohRelayUrl = deriveRelayUrl(ctx.tls, ctx.httpBindAddr, ctx.hostname);
  }
  // deno-lint-ignore no-control-regex -- control characters are exactly what is refused here
  if (/[\x00-\x1f\x7f"\\]/.test(irohRelayUrl)) {
    throw new ConfigError("imap.iroh_relay_url", "must not contain control characters, quotes or backslashes");
  }

  const entries = new Map<string, string>();
  entries.set("/shared/vendor/deltachat/irohrelay", irohRelayUrl);
  const comment = i.str("comment");
  if (comment !== undefined) entries.set("/shared/comment", comment);
  const admin = i.str("admin");
  if (admin !== undefined) entries.set("/shared/admin", admin);
  const md = i.table("metadata");
  if (md) {
    for (const [name, value] of Object.entries(md.table_)) {
      md.raw(name);
      const key = `imap.metadata."${name}"`;
      if (!ENTRY_NAME.test(name) || name.includes("//") || /[*%]/.test(name)) {
        throw new ConfigError(key, "entry names must look like /shared/vendor/<vendor>/<name> (ASCII, no * or %)");
      }
      if (typeof value !== "string") throw new ConfigError(key, `expected a string value, got ${show(value)}`);
      const lower = name.toLowerCase();
      if (lower === "/shared/vendor/deltachat/irohrelay") {
        throw new ConfigError(key, "set the relay URL with imap.iroh_relay_url");
      }
      entries.set(lower, value);
    }
  }

  const users = new Map<string, string>();
  const u = i.table("users");
  if (u) {
    for (const [name, hash] of Object.entries(u.table_)) {
      u.raw(name);
      if (typeof hash !== "string" || !PASSWORD_HASH.test(hash)) {
        throw new ConfigError(
          `imap.users."${name}"`,
          `expected a password hash "pbkdf2-sha256$<iterations>$<salt>$<hash>" (make one with: npx deno task start hash-password, in a clone; or: iroh-relay-deno hash-password)`,
        );
      }
      users.set(name, hash);
    }
  }
  const defaultLogin = mode === "proxy" ? "upstream" : users.size > 0 ? "users" : "any";
  const login = i.oneOf("login", ["any", "users", "upstream"] as const, defaultLogin);
  if (login === "users" && users.size === 0) {
    throw new ConfigError("imap.login", `"users" needs at least one entry in [imap.users]`);
  }
  if (login === "upstream" && mode !== "proxy") {
    throw new ConfigError("imap.login", `"upstream" only works with mode = "proxy"`);
  }
  // The proxy relays LOGIN/AUTHENTICATE to the upstream untouched, so the upstream decides;
  // a second, local check would need credentials of its own.
  if (mode === "proxy" && login !== "upstream") {
    throw new ConfigError(
      "imap.login",
      `mode = "proxy" logs users in at the upstream: use "upstream" (the default), got "${login}"`,
    );
  }

  let upstream: ImapUpstream | undefined;
  const up = i.table("upstream");
  if (up) {
    readers.push(up);
    const host = up.str("host");
    if (!host) throw new ConfigError("imap.upstream.host", "is required");
    const useTls = up.bool("tls", true);
    const port = up.int("port", { min: 1, max: 65535 }) ?? (useTls ? 993 : 143);
    const caFile = up.str("ca_file");
    const serverName = up.str("server_name");
    upstream = {
      host,
      port,
      tls: useTls,
      verifyCertificate: up.bool("verify_certificate", true),
      ...(caFile !== undefined ? { caFile } : {}),
      ...(serverName !== undefined ? { serverName } : {}),
    };
  }
  if (mode === "proxy" && !upstream) throw new ConfigError("imap.upstream", `is required when imap.mode = "proxy"`);

  const limits: ImapLimits = {
    maxSessions: 1000,
    maxSessionsPerSource: 32,
    sourceConnectsPerSec: 8,
    sourceConnectsBurst: 32,
    maxLineBytes: 64 * 1024,
    maxLiteralBytes: 64 * 1024,
    maxProxyLiteralBytes: 64 * 1024 * 1024,
    idleTimeoutMs: 30 * 60_000,
    // Upstream servers give clients that have not logged in 30 s or less; idle pre-login sessions are cheap to open.
    loginTimeoutMs: 30_000,
    failedLoginDelayMs: 2_000,
    maxPendingReplyBytes: 1024 * 1024,
    passwordCheckConcurrency: 2,
    maxPendingPasswordChecks: 64,
  };
  const l = i.table("limits");
  if (l) {
    readers.push(l);
    limits.maxSessions = l.int("max_sessions", { min: 1 }) ?? limits.maxSessions;
    limits.maxSessionsPerSource = l.int("max_sessions_per_source", { min: 1 }) ?? limits.maxSessionsPerSource;
    limits.sourceConnectsPerSec = l.num("source_connects_per_sec", { min: 0 }) ?? limits.sourceConnectsPerSec;
    limits.sourceConnectsBurst = l.int("source_connects_burst", { min: 1 }) ?? limits.sourceConnectsBurst;
    limits.maxLineBytes = l.int("max_line_bytes", { min: 1024 }) ?? limits.maxLineBytes;
    limits.maxLiteralBytes = l.int("max_literal_bytes", { min: 1024 }) ?? limits.maxLiteralBytes;
    limits.maxProxyLiteralBytes = l.int("max_proxy_literal_bytes", { min: 1024 }) ?? limits.maxProxyLiteralBytes;
    const idle = l.num("idle_timeout_secs", { min: 0.05 });
    if (idle !== undefined) limits.idleTimeoutMs = idle * 1000;
    const login = l.num("login_timeout_secs", { min: 0.05 });
    if (login !== undefined) limits.loginTimeoutMs = login * 1000;
    const delay = l.num("failed_login_delay_secs", { min: 0 });
    if (delay !== undefined) limits.failedLoginDelayMs = delay * 1000;
    limits.maxPendingReplyBytes = l.int("max_pending_reply_bytes", { min: 4096 }) ?? limits.maxPendingReplyBytes;
    limits.passwordCheckConcurrency = l.int("password_check_concurrency", { min: 1, max: 64 }) ??
      limits.passwordCheckConcurrency;
    limits.maxPendingPasswordChecks = l.int("max_pending_password_checks", { min: 1 }) ??
      limits.maxPendingPasswordChecks;
  }

  return {
    ...(bindAddr ? { bindAddr } : {}),
    ...(tlsBindAddr ? { tlsBindAddr } : {}),
    ...(certPath ? { certPath } : {}),
    ...(keyPath ? { keyPath } : {}),
    mode,
    irohRelayUrl,
    irohRelayUrlDerived: configuredUrl === undefined,
    entries,
    login,
    users,
    ...(upstream ? { upstream } : {}),
    limits,
  };
}
