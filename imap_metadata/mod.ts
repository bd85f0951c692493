/**
 * @module
 * The IMAP METADATA discovery service: tells Delta Chat clients where the
 * iroh relay is, as `/shared/vendor/deltachat/irohrelay` (spec §1, §4).
 *
 * - `mode = "standalone"`: a minimal IMAP4rev1 server (`session.ts`) that
 *   logs users in (`login = any | users`) and answers GETMETADATA;
 * - `mode = "proxy"`: in front of a real IMAP server (`proxy_session.ts`),
 *   which keeps doing everything else and decides logins;
 * - listeners: `bind_addr` (plain) and `tls_bind_addr` (implicit TLS with
 *   `cert_path`/`key_path`, defaulting to the relay's `[tls]` files). There is
 *   no STARTTLS: Deno has no server-side TLS upgrade.
 * - admission (`admission/`): one gate for both listeners (`max_sessions`,
 *   `max_sessions_per_source`, `source_connects_per_sec/burst`); IMAPS
 *   handshakes have the `[limits] tls_handshake_timeout_secs` deadline and
 *   the certificate is re-read by {@link ImapService.reloadTls} (SIGHUP)
 *   without rebinding.
 *
 * @example
 * ```ts
 * import { startImap } from "./mod.ts";
 * import { configFromText } from "../config/mod.ts";
 * import { silentLogger } from "../log/mod.ts";
 * const { config } = configFromText('[imap]\nbind_addr = "127.0.0.1:0"\niroh_relay_url = "http://127.0.0.1:3340/"', "inline");
 * const imap = await startImap(config, { log: silentLogger });
 * const conn = await Deno.connect({ port: imap.addrs.plain!.port });
 * const buf = new Uint8Array(256);
 * const n = (await conn.read(buf)) ?? 0;
 * conn.close();
 * await imap.close();
 * if (!new TextDecoder().decode(buf.subarray(0, n)).startsWith("* OK")) throw new Error("no greeting");
 * ```
 */

import {
  type AcceptedConn,
  type Acceptor,
  AdmissionGate,
  type AdmissionLimits,
  AdmissionMetrics,
  PlainAcceptor,
  TlsAcceptor,
} from "../admission/mod.ts";
import { type Config, formatBindAddr, type ImapConfig, type ImapLimits } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";
import { acceptLoop, type ListenerContext, MAX_ERRORS, refuser, serveStandalone, SessionSet } from "./listener.ts";
import { ImapMetrics } from "./metrics.ts";
import { PasswordChecks } from "./password_checks.ts";
import { serveProxy } from "./proxy.ts";
import { connectUpstream } from "./upstream.ts";

export { hashPassword, verifyPassword } from "./password.ts";

/** A running IMAP service. */
export interface ImapService {
  /** Bound addresses (port 0 in the config becomes the real port here). */
  addrs: { plain?: Deno.NetAddr; tls?: Deno.NetAddr };
  /** Health summary for `/healthz`. */
  status(): Record<string, unknown>;
  /** OpenMetrics lines, prefix `imap_`, without `# EOF`. */
  metrics(): string;
  /**
   * Re-reads `cert_path`/`key_path` for new IMAPS handshakes (open sessions
   * keep theirs). Resolves to false when there is no IMAPS listener.
   * @throws {Error} unreadable or unusable files (the old certificate stays)
   */
  reloadTls(): Promise<boolean>;
  /** Stops listening and ends every session. */
  close(): Promise<void>;
}

/** Wiring of {@link startImap}. */
export interface ImapStartOptions {
  /** Logger for the `imap` component. */
  log: Logger;
  /** Admission counters shared with the relay (rendered there); default: our own, rendered by {@link ImapService.metrics}. */
  admissionMetrics?: AdmissionMetrics;
  /** TLS handshake deadline for IMAPS, ms (default `[limits] tls_handshake_timeout_secs`). */
  tlsHandshakeTimeoutMs?: number;
}

/** The IMAP gate's limits: `max_sessions` with a reserve of an eighth (at most 256) for sources holding few sessions. */
export function imapAdmission(l: ImapLimits): AdmissionLimits {
  return {
    maxConnections: l.maxSessions,
    reserve: Math.min(256, Math.floor(l.maxSessions / 8)),
    maxPerSource: l.maxSessionsPerSource,
    perSecond: l.sourceConnectsPerSec,
    burst: l.sourceConnectsBurst,
  };
}

/**
 * Starts the listeners `config.imap` describes.
 * @throws {Error} no `[imap]` section, unreadable TLS or CA files, or a port in use
 */
export async function startImap(config: Config, opts: ImapStartOptions): Promise<ImapService> {
  const imap = config.imap;
  if (!imap) throw new Error("No [imap] section in the config");
  const log = opts.log;
  const metrics = new ImapMetrics();
  const sessions = new SessionSet();
  const passwords = imap.mode === "standalone" && imap.login === "users"
    ? new PasswordChecks({
      users: imap.users,
      limits: {
        concurrency: imap.limits.passwordCheckConcurrency,
        maxPending: imap.limits.maxPendingPasswordChecks,
      },
      log,
      metrics,
    })
    : null;
  const serve = await sessionServer(imap, log, metrics, passwords);
  const ctx: ListenerContext = { config: imap, log, metrics, serve: (c, r, s) => serve(c, r, s) };

  const listeners: Acceptor[] = [];
  const loops: Promise<void>[] = [];
  const addrs: ImapService["addrs"] = {};
  const ownAdmissionMetrics = opts.admissionMetrics === undefined;
  const admissionMetrics = opts.admissionMetrics ?? new AdmissionMetrics();
  const gate = new AdmissionGate(imapAdmission(imap.limits));
  let tlsAcceptor: TlsAcceptor | undefined;
  try {
    if (imap.bindAddr) {
      const l = new PlainAcceptor(Deno.listen({ hostname: imap.bindAddr.hostname, port: imap.bindAddr.port }), {
        gate,
        metrics: admissionMetrics,
        listener: "imap",
        onRefused: refuser(ctx, sessions),
      });
      listeners.push(l);
      addrs.plain = l.addr;
    }
    if (imap.tlsBindAddr) {
      const cert = await Deno.readTextFile(imap.certPath!);
      const key = await Deno.readTextFile(imap.keyPath!);
      // No ALPN list: core asks for "imap" on ports other than 993, and a server that announces none accepts any.
      tlsAcceptor = await TlsAcceptor.listen({
        hostname: imap.tlsBindAddr.hostname,
        port: imap.tlsBindAddr.port,
        cert,
        key,
        handshakeTimeoutMs: opts.tlsHandshakeTimeoutMs ?? config.limits.tlsHandshakeTimeoutMs,
        gate,
        metrics: admissionMetrics,
        listener: "imap",
      });
      listeners.push(tlsAcceptor);
      addrs.tls = tlsAcceptor.addr;
    }
  } catch (e) {
    for (const l of listeners) l.close();
    throw e;
  }
  for (const l of listeners) loops.push(acceptLoop(l, ctx, sessions));
  const where = [
    addrs.plain && `imap://${formatBindAddr(addrs.plain)}`,
    addrs.tls && `imaps://${formatBindAddr(addrs.tls)}`,
  ]
    .filter(Boolean).join(", ");
  log.info(
    `listening on ${where} (${imap.mode}, login ${imap.login}${
      imap.mode === "proxy"
        ? `, upstream ${imap.upstream!.tls ? "imaps" : "imap"}://${imap.upstream!.host}:${imap.upstream!.port}`
        : ""
    }); advertising irohrelay ${imap.irohRelayUrl}${imap.irohRelayUrlDerived ? " (derived)" : ""}`,
  );

  let closing: Promise<void> | null = null;
  return {
    addrs,
    status: () => ({
      mode: imap.mode,
      login: imap.login,
      irohRelayUrl: imap.irohRelayUrl,
      ...(addrs.plain ? { plain: formatBindAddr(addrs.plain) } : {}),
      ...(addrs.tls ? { tls: formatBindAddr(addrs.tls) } : {}),
      sessions: metrics.active,
      maxSessions: imap.limits.maxSessions,
    }),
    metrics: () => metrics.render() + (ownAdmissionMetrics ? admissionMetrics.render() : ""),
    async reloadTls() {
      if (tlsAcceptor === undefined) return false;
      const cert = await Deno.readTextFile(imap.certPath!);
      const key = await Deno.readTextFile(imap.keyPath!);
      tlsAcceptor.setCertificate(cert, key);
      return true;
    },
    close() {
      closing ??= (async () => {
        for (const l of listeners) {
          try {
            l.close();
          } catch {
            // already closed
          }
        }
        await Promise.allSettled(loops);
        // Waiting password checks are dropped, not run: shutdown must not wait for PBKDF2 queued by guessers.
        passwords?.close();
        await sessions.closeAll();
      })();
      return closing;
    },
  };
}

type Serve = (conn: AcceptedConn, remote: string, signal: AbortSignal) => Promise<void>;

/** Builds the per-connection handler for the configured mode. */
async function sessionServer(
  imap: ImapConfig,
  log: Logger,
  metrics: ImapMetrics,
  passwords: PasswordChecks | null,
): Promise<Serve> {
  const base: Omit<ListenerContext, "serve"> = { config: imap, log, metrics };
  if (imap.mode === "proxy") {
    const upstream = imap.upstream!;
    const caCert = upstream.caFile !== undefined ? await Deno.readTextFile(upstream.caFile) : undefined;
    if (upstream.tls && !upstream.verifyCertificate) {
      log.warn("imap.upstream.verify_certificate = false: the upstream's certificate is not checked");
    }
    const target = caCert !== undefined ? { upstream, caCert } : { upstream };
    const proxy = {
      entries: imap.entries,
      maxLineBytes: imap.limits.maxLineBytes,
      maxLiteralBytes: imap.limits.maxLiteralBytes,
      maxProxyLiteralBytes: imap.limits.maxProxyLiteralBytes,
      failedLoginDelayMs: imap.limits.failedLoginDelayMs,
      maxPendingReplyBytes: imap.limits.maxPendingReplyBytes,
    };
    const serve: Serve = (conn, remote, signal) =>
      serveProxy(conn, remote, signal, { ...base, serve, proxy, connect: () => connectUpstream(target) });
    return serve;
  }
  if (imap.login === "upstream") throw new Error('imap.login = "upstream" needs mode = "proxy"');
  if (imap.login === "any") log.info("imap.login = any: every user name and password is accepted");
  const session = { entries: imap.entries, login: imap.login, maxErrors: MAX_ERRORS };
  const serve: Serve = (conn, remote, signal) =>
    serveStandalone(conn, remote, signal, { ...base, serve, session, passwords });
  return serve;
}
