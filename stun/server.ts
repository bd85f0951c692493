/**
 * @module
 * The STUN UDP listener (`enable_stun`, `stun_bind_addr`): one socket, one
 * receive loop, a reply per accepted Binding request. Parsing is
 * `codec.ts`, the per-source limit `rate_limit.ts`; this file only moves
 * datagrams. Needs `Deno.listenDatagram` (unstable `net`, enabled in
 * `deno.json`).
 */

import type { Logger } from "../log/mod.ts";
import { encodeBindingSuccess, ipBytes, MAX_REQUEST_BYTES, parseBindingRequest } from "./codec.ts";
import { StunMetrics } from "./metrics.ts";
import { DEFAULT_STUN_RATE_LIMIT, StunRateLimit, type StunRateLimitOptions } from "./rate_limit.ts";

/** Options of {@link startStunServer}. */
export interface StunServerOptions {
  /** Logger (per-datagram detail at debug only: a flood must not flood the log). */
  log?: Logger;
  /** Rate limits (default {@link DEFAULT_STUN_RATE_LIMIT}). */
  rateLimit?: StunRateLimitOptions;
  /** Clock, ms (tests). */
  now?: () => number;
}

/** A running STUN server. */
export interface StunServer {
  /** The bound address (port 0 resolved). */
  addr: Deno.NetAddr;
  /** Counters. */
  metrics: StunMetrics;
  /** Closes the socket and waits for the loop to end. */
  close(): Promise<void>;
}

/**
 * Binds `addr` and answers Binding requests until closed.
 * @throws {Deno.errors.AddrInUse} and other bind errors
 */
export function startStunServer(addr: { hostname: string; port: number }, opts: StunServerOptions = {}): StunServer {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: addr.hostname, port: addr.port });
  const metrics = new StunMetrics();
  const now = opts.now ?? (() => performance.now());
  const limit = new StunRateLimit(opts.rateLimit ?? DEFAULT_STUN_RATE_LIMIT, now());
  const log = opts.log;
  let closed = false;
  const loop = (async () => {
    // One byte more than we accept, so an oversized datagram is seen as such rather than cut to fit.
    const buf = new Uint8Array(MAX_REQUEST_BYTES + 1);
    while (!closed) {
      let pkt: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const [b, a] = await conn.receive(buf);
        pkt = b;
        from = a as Deno.NetAddr;
      } catch (e) {
        if (closed || e instanceof Deno.errors.BadResource) break;
        metrics.c.failures++;
        log?.warn(`STUN receive failed: ${(e as Error).message}`);
        continue;
      }
      metrics.c.requests++;
      const req = parseBindingRequest(pkt);
      if (typeof req === "string") {
        metrics.c.badRequests++;
        if (log?.debugEnabled) {
          log.debug(`STUN: dropped ${pkt.length} bytes from ${from.hostname}:${from.port}: ${req}`);
        }
        continue;
      }
      if (!limit.allow(from.hostname, now())) {
        metrics.c.ratelimited++;
        continue;
      }
      let res: Uint8Array;
      try {
        res = encodeBindingSuccess(req, from);
      } catch {
        metrics.c.badRequests++;
        continue;
      }
      try {
        const sent = await conn.send(res, from);
        if (sent !== res.length) {
          metrics.c.failures++;
        } else {
          if (ipBytes(from.hostname).length === 4) metrics.c.ipv4Success++;
          else metrics.c.ipv6Success++;
          if (log?.debugEnabled) log.debug(`STUN: answered ${from.hostname}:${from.port} (${req.kind})`);
        }
      } catch (e) {
        if (closed) break;
        metrics.c.failures++;
        if (log?.debugEnabled) {
          log.debug(`STUN: reply to ${from.hostname}:${from.port} failed: ${(e as Error).message}`);
        }
      }
    }
  })();
  return {
    addr: conn.addr as Deno.NetAddr,
    metrics,
    async close() {
      if (!closed) {
        closed = true;
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      await loop;
    },
  };
}
