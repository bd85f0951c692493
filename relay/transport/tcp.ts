/**
 * @module
 * The raw TCP/TLS transport of the relay port: our own HTTP/1.1 request
 * heads, then either a plain endpoint answer (keep-alive) or a `/relay`
 * upgrade carried on the same socket as derp frames or WebSocket frames.
 *
 * Why raw: `Deno.serve` cannot answer the 0.35 `Upgrade: iroh derp http`
 * with a 101 and hand over the socket (spec §0), and one port must serve
 * all three client kinds.
 *
 * This file owns the listener and the HTTP side of a connection: accept
 * (with the accept rate limit), request heads with keep-alive, plain
 * endpoints and other services' routes, and the establish timeout until the
 * upgrade (slowloris requests are closed). A `/relay` GET is handed to
 * `upgrade.ts` (101, read loop and frame feeders), whose writes go through
 * `stream_sender.ts`; `byte_conn.ts` has the socket helpers all three share.
 *
 * Connections arrive through an {@link Acceptor} (`admission/`): per-source
 * and global limits were applied before we see them; the slot is released
 * when the connection is finished. The metrics listener runs on this same
 * code (role `metrics`), so it gets the same head timeout and size limits.
 */

import type { AcceptedConn, Acceptor } from "../../admission/mod.ts";
import { type ByteConn, closeQuietly, isConnectionGone, respondAndClose, writeAll } from "./byte_conn.ts";
import { captivePortalEndpoint, type HealthInfo, httpErrorResponse, relayEndpoint } from "./endpoints.ts";
import {
  HttpError,
  type HttpResponse,
  isRelayPath,
  parseRequestHead,
  requestBodyLength,
  type RequestHead,
  serializeResponse,
  wantsClose,
} from "./http1.ts";
import { ByteBucket } from "../server/rate_limit.ts";
import { findRoute, type HttpRoute, routeRequest, routeResponse } from "./routes.ts";
import type { RelayCore } from "../server/relay_core.ts";
import { type ReadBudget, upgrade } from "./upgrade.ts";

/** What a listener serves. */
export type ListenerRole = "relay" | "captive-portal" | "metrics";

/** Shared context of a listener. */
export interface TransportContext {
  /** The relay core. */
  core: RelayCore;
  /**
   * `relay`: everything; `captive-portal`: only `/generate_204` (plain port
   * beside TLS); `metrics`: only {@link TransportContext.endpoint}.
   */
  role: ListenerRole;
  /** Answers plain requests on a `metrics` listener. */
  endpoint?: (head: RequestHead) => HttpResponse;
  /** What `/healthz` reports. */
  health: HealthInfo;
  /** `[limits] accept_conn_limit/burst`: new connections per second. */
  acceptLimit?: { perSecond: number; burst: number };
  /** Other services' HTTP routes (discovery, mailbox, ACME). */
  routes?: readonly HttpRoute[];
  /** Scheme the listener is reached by, for the URLs routes see. */
  scheme?: "http" | "https";
  /** Allowance of large read buffers shared by the process's relay connections. */
  readBudget?: ReadBudget;
}

/** Largest request body skipped on a plain endpoint, bytes. */
const MAX_SKIPPED_BODY = 64 * 1024;
/**
 * Accepts connections from `listener` until it closes.
 * @returns when the listener is closed
 */
export async function serveListener(listener: Acceptor, ctx: TransportContext): Promise<void> {
  const limit = ctx.acceptLimit;
  const bucket = limit ? new ByteBucket(limit.perSecond, limit.burst, ctx.core.now()) : null;
  for (;;) {
    if (bucket !== null) {
      // Over the accept rate, leave connections in the kernel backlog rather than refuse them.
      const wait = bucket.delayFor(1, ctx.core.now());
      if (wait > 0) await ctx.core.sleep(wait);
      bucket.take(1, ctx.core.now());
    }
    let admitted;
    try {
      admitted = await listener.accept();
    } catch (e) {
      if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
      // Out of descriptors can be caused from outside (a connection flood): limited.
      ctx.core.metrics.c.acceptErrors++;
      ctx.core.peerLog.warn("accept failed", `accept failed: ${(e as Error).message}`);
      // Out of descriptors and the like: back off instead of spinning.
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    const { conn, remote, ticket } = admitted;
    try {
      (conn as AcceptedConn & { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    } catch {
      // not TCP (tests) or already gone
    }
    handleConnection(conn, remote, ctx)
      .catch((e) => ctx.core.log.error(`connection handler: ${e}`))
      .finally(() => ticket.release());
  }
}

/**
 * Serves one accepted connection: HTTP requests until an upgrade, then the
 * relay protocol. Resolves when the connection is finished. Never rejects
 * for the peer's mistakes.
 */
export async function handleConnection(conn: ByteConn, remote: string, ctx: TransportContext): Promise<void> {
  const core = ctx.core;
  // Metrics-port connections (scrapes) are not relay-port connections: keep them out of those counters.
  const m = ctx.role === "metrics"
    ? { httpConnections: 0, httpConnectionsErrored: 0, httpConnectionsClosed: 0 }
    : core.metrics.c;
  m.httpConnections++;
  const acceptedAt = core.now();
  let timedOut = false;
  const watch = {
    deadline: acceptedAt + core.opts.establishTimeoutMs,
    checkTimers(now: number) {
      if (now >= this.deadline) {
        timedOut = true;
        closeQuietly(conn);
      }
    },
    shutdown() {
      closeQuietly(conn);
    },
  };
  core.watch(watch);
  let buf = new Uint8Array(4096);
  let len = 0;
  let upgraded = false;
  try {
    for (;;) {
      let parsed;
      try {
        parsed = parseRequestHead(buf.subarray(0, len));
      } catch (e) {
        if (!(e instanceof HttpError)) throw e;
        await respondAndClose(conn, httpErrorResponse(e, ctx.role === "relay"));
        return;
      }
      if (parsed === null) {
        if (len === buf.length) {
          const grown = new Uint8Array(buf.length * 2);
          grown.set(buf);
          buf = grown;
        }
        const n = await conn.read(buf.subarray(len));
        if (n === null) return;
        len += n;
        continue;
      }
      const { head, length } = parsed;
      if (ctx.role === "relay" && isRelayPath(head.path) && head.method === "GET") {
        core.unwatch(watch);
        upgraded = true;
        await upgrade(conn, head, buf.slice(length, len), remote, acceptedAt, ctx);
        return;
      }
      const route = ctx.routes && ctx.role !== "metrics" ? findRoute(ctx.routes, head.path, ctx.role) : undefined;
      let bodyLen: number;
      try {
        bodyLen = requestBodyLength(head);
        if (bodyLen > (route ? route.maxBodyBytes : MAX_SKIPPED_BODY)) {
          throw new HttpError(route ? 413 : 400, "Request body too large");
        }
      } catch (e) {
        if (!(e instanceof HttpError)) throw e;
        await respondAndClose(conn, httpErrorResponse(e, ctx.role === "relay"));
        return;
      }
      if (route) {
        // Read the whole (bounded) body into the buffer, then answer from the route.
        const need = length + bodyLen;
        if (buf.length < need) {
          const grown = new Uint8Array(need);
          grown.set(buf.subarray(0, len));
          buf = grown;
        }
        while (len < need) {
          const n = await conn.read(buf.subarray(len, need));
          if (n === null) return;
          len += n;
        }
        const res = await answerRoute(route, head, buf.subarray(length, need), remote, ctx);
        const close = wantsClose(head);
        await writeAll(conn, serializeResponse(res, { close }));
        if (close) return;
        buf.copyWithin(0, need, len);
        len -= need;
        if (buf.length > 64 * 1024 && len <= 4096) buf = buf.slice(0, 4096);
        watch.deadline = core.now() + core.opts.establishTimeoutMs;
        continue;
      }
      const res = ctx.role === "relay"
        ? relayEndpoint(head, ctx.health)
        : ctx.role === "metrics" && ctx.endpoint
        ? ctx.endpoint(head)
        : captivePortalEndpoint(head);
      const close = wantsClose(head);
      await writeAll(conn, serializeResponse(res, { close, headOnly: head.method === "HEAD" }));
      if (close) return;
      // Skip the (small) body, then keep the connection for the next request.
      let consumed = length + bodyLen;
      while (len < consumed) {
        const skip = Math.min(consumed - len, buf.length);
        const n = await conn.read(buf.subarray(0, skip));
        if (n === null) return;
        consumed -= n;
      }
      buf.copyWithin(0, consumed, len);
      len -= consumed;
      watch.deadline = core.now() + core.opts.establishTimeoutMs;
    }
  } catch (e) {
    if (!timedOut && !isConnectionGone(e)) core.log.debug(`${remote}: ${(e as Error).message}`);
    m.httpConnectionsErrored++;
  } finally {
    core.unwatch(watch);
    if (timedOut) m.httpConnectionsErrored++;
    if (!upgraded) closeQuietly(conn);
    m.httpConnectionsClosed++;
  }
}

/** Runs a route; its failures become a 500 and a log line, never a dropped connection for others. */
async function answerRoute(
  route: HttpRoute,
  head: RequestHead,
  body: Uint8Array,
  remote: string,
  ctx: TransportContext,
): Promise<HttpResponse> {
  try {
    const req = routeRequest(head, body, ctx.scheme ?? "http");
    return await routeResponse(await route.handle(req, { remote: hostOf(remote) }));
  } catch (e) {
    ctx.core.peerLog.line("error", "route failed", `${route.prefix} handler failed: ${(e as Error).message}`);
    return { status: 500, headers: [["Content-Type", "text/plain; charset=utf-8"]], body: "Internal error" };
  }
}

/** The address part of `host:port` / `[v6]:port`. */
function hostOf(remote: string): string {
  const i = remote.lastIndexOf(":");
  const host = i < 0 ? remote : remote.slice(0, i);
  return host.startsWith("[") ? host.slice(1, -1) : host;
}
