/**
 * @module
 * Proxy mode's socket side: for each accepted client, dial the upstream,
 * then run two pumps (client → {@link ProxySession} → upstream, and back),
 * carrying out the session's actions in order.
 *
 * - Each pump waits for its writes before reading again, so a slow reader
 *   on either side slows the other side's reads (TCP backpressure) instead
 *   of growing buffers.
 * - Writes to the client come from both pumps and go through one
 *   {@link Writer}, so nothing interleaves; the failed-login delay is a
 *   delayed write in that queue.
 * - The login deadline runs until the upstream accepts a login; the idle
 *   deadline counts traffic in either direction (the upstream's IDLE
 *   keepalives keep an idling client alive, as with a direct connection).
 * - When either side ends, pending client writes get a short grace period,
 *   then both sockets close.
 *
 * Credentials are never logged: the proxy logs connect failures and session
 * ends only.
 */

import type { AcceptedConn } from "../admission/mod.ts";
import { type ByteConn, closeQuietly, SessionTimer, within, Writer } from "./conn.ts";
import type { ListenerContext } from "./listener.ts";
import { type ProxyAction, ProxySession, type ProxySessionConfig } from "./proxy_session.ts";

/** Read buffer per direction, bytes. */
const READ_BUFFER = 32 * 1024;
/** How long final writes (BYE, last upstream bytes) may take when a session ends, ms. */
const FLUSH_GRACE_MS = 1000;

const enc = new TextEncoder();

/** What proxy sessions need besides the listener context. */
export interface ProxyContext extends ListenerContext {
  /** Session settings. */
  proxy: ProxySessionConfig;
  /** Dials the upstream. */
  connect(): Promise<ByteConn>;
}

/** Serves one proxied session until either side ends, a timeout, or `signal`. */
export async function serveProxy(
  conn: AcceptedConn,
  remote: string,
  signal: AbortSignal,
  ctx: ProxyContext,
): Promise<void> {
  const { metrics: m, log, config } = ctx;
  const clientW = new Writer(conn, signal);
  let upstream: ByteConn | null = null;
  let closed = false;
  const gone = Promise.withResolvers<null>();
  const finish = () => {
    if (closed) return;
    closed = true;
    timer.stop();
    closeQuietly(conn);
    if (upstream) closeQuietly(upstream);
    gone.resolve(null);
  };
  const timer = new SessionTimer(config.limits, (reason) => {
    m.c.timeouts++;
    m.disconnects[reason === "login" ? "login_timeout" : "idle_timeout"]++;
    log.debug(`session ${remote}: ${reason} timeout`);
    const text = reason === "login" ? "Login timeout" : "Autologout; idle for too long";
    within(clientW.write(enc.encode(`* BYE ${text}\r\n`)), FLUSH_GRACE_MS).finally(finish);
  });
  signal.addEventListener("abort", finish, { once: true });
  try {
    try {
      // Don't let a dial that hangs keep the session (and service shutdown) waiting past a timeout.
      const dial = ctx.connect();
      dial.then((c) => closed && closeQuietly(c), () => {});
      upstream = await Promise.race([dial, gone.promise]);
    } catch (e) {
      if (closed) return;
      m.c.upstreamErrors++;
      log.warn(
        `session ${remote}: upstream ${config.upstream?.host}:${config.upstream?.port} unavailable: ${
          (e as Error).message
        }`,
      );
      await within(clientW.write(enc.encode("* BYE Upstream server unavailable\r\n")), FLUSH_GRACE_MS);
      return;
    }
    if (closed || upstream === null) return; // timed out or shut down while dialing
    const up = upstream;
    const upW = new Writer(up, signal);
    const session = new ProxySession(ctx.proxy);
    let ending = false;
    let wasAuthenticated = false;

    const apply = (actions: ProxyAction[]): Promise<unknown> => {
      const writes: Promise<void>[] = [];
      for (const a of actions) {
        switch (a.type) {
          case "to-upstream":
            writes.push(upW.write(a.bytes));
            break;
          case "to-client":
            writes.push(clientW.write(a.bytes, a.delayMs ?? 0));
            break;
          case "close":
            ending = true;
            m.disconnects[a.code]++;
            break;
          case "event":
            switch (a.event) {
              case "intercepted":
                m.c.commands++;
                break;
              case "getmetadata":
                m.c.getmetadata++;
                break;
              case "login-ok":
                m.c.loginsOk++;
                break;
              case "login-failed":
                m.c.loginsFailed++;
                break;
              case "bad":
                m.c.badCommands++;
                break;
              case "limit":
                m.c.limitErrors++;
                break;
            }
        }
      }
      if (!wasAuthenticated && session.authenticated) {
        wasAuthenticated = true;
        timer.authenticated();
      }
      return Promise.all(writes);
    };

    const pump = async (from: ByteConn, feed: (b: Uint8Array) => ProxyAction[], side: string): Promise<string> => {
      const buf = new Uint8Array(READ_BUFFER);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) return `${side} closed`;
          timer.activity();
          await apply(feed(buf.subarray(0, n)));
          if (ending || closed || clientW.failed || upW.failed) return `${side} ended the session`;
        }
      } catch (e) {
        if (!closed) {
          if (side === "upstream") m.c.upstreamErrors++;
          else m.c.sessionErrors++;
        }
        return `${side}: ${(e as Error).message}`;
      }
    };

    const client = pump(conn, (b) => session.fromClient(b), "client");
    const upstreamSide = pump(up, (b) => session.fromUpstream(b), "upstream");
    const why = await Promise.race([client, upstreamSide]);
    log.debug(`session ${remote}: ${why}`);
    await within(clientW.idle(), FLUSH_GRACE_MS);
    finish();
    await Promise.allSettled([client, upstreamSide]);
  } finally {
    signal.removeEventListener("abort", finish);
    finish();
    if (upstream) closeQuietly(upstream);
  }
}
