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

import { type Config, formatBindAddr, type ImapConfig } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";
import { acceptLoop, type ListenerContext, MAX_ERRORS, serveStandalone, SessionSet } from "./listener.ts";
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
  /** Stops listening and ends every session. */
  close(): Promise<void>;
}

/** Wiring of {@link startImap}. */
export interface ImapStartOptions {
  /** Logger for the `imap` component. */
  log: Logger;
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

  const listeners: Deno.Listener[] = [];
  const loops: Promise<void>[] = [];
  const addrs: ImapService["addrs"] = {};
  try {
    if (imap.bindAddr) {
      const l = Deno.listen({ hostname: imap.bindAddr.hostname, port: imap.bindAddr.port });
      listeners.push(l);
      addrs.plain = l.addr as Deno.NetAddr;
    }
    if (imap.tlsBindAddr) {
      const cert = await Deno.readTextFile(imap.certPath!);
      const key = await Deno.readTextFile(imap.keyPath!);
      // No ALPN list: core asks for "imap" on ports other than 993, and a server that announces none accepts any.
      const l = Deno.listenTls({ hostname: imap.tlsBindAddr.hostname, port: imap.tlsBindAddr.port, cert, key });
      listeners.push(l);
      addrs.tls = l.addr as Deno.NetAddr;
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
    metrics: () => metrics.render(),
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

type Serve = (conn: Deno.Conn, remote: string, signal: AbortSignal) => Promise<void>;

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
