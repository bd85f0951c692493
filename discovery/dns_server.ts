/**
 * @module
 * The DNS listeners: UDP and TCP on one address (`dns_bind_addr`), both
 * answered by {@link DiscoveryService.dns}. UDP needs Deno's unstable `net`
 * API (`Deno.listenDatagram`), enabled in `deno.json`.
 *
 * Hostile-input bounds, all ours, none announced by a peer:
 * - UDP: at most {@link MAX_UDP_INFLIGHT} queries being answered at once;
 *   beyond that a query is dropped (counted), as a loaded server would.
 * - TCP (RFC 7766 framing: 2-byte length, then the message): at most
 *   {@link MAX_TCP_CONNECTIONS} connections (a new one beyond is closed at
 *   once); a query longer than {@link MAX_TCP_QUERY} closes the connection;
 *   one fixed buffer per connection; a connection with no complete query
 *   for {@link TCP_IDLE_MS} is closed, which also ends one whose peer stops
 *   reading our replies. Queries on one connection are answered in order.
 */

import type { Logger } from "../log/mod.ts";
import type { DiscoveryService } from "./service.ts";

/** UDP queries in progress at once. */
export const MAX_UDP_INFLIGHT = 1024;
/** Open TCP connections at once. */
export const MAX_TCP_CONNECTIONS = 4096;
/** Largest query accepted over TCP, bytes (queries are small; replies may be up to 64 KiB). */
export const MAX_TCP_QUERY = 4096;
/** A TCP connection that completes no query for this long is closed, ms. */
export const TCP_IDLE_MS = 5000;

/** Options of {@link startDnsServer}. */
export interface DnsServerOptions {
  /** Address for both UDP and TCP; port 0 picks one free for both. */
  hostname: string;
  /** Port. */
  port: number;
  /** Logger. */
  log?: Logger;
  /** Idle limit override (tests), ms. */
  tcpIdleMs?: number;
}

/** A running DNS server. */
export interface DnsServer {
  /** The bound address (same port for UDP and TCP). */
  addr: { hostname: string; port: number };
  /** Stops both listeners and closes every TCP connection. */
  close(): Promise<void>;
}

function bind(hostname: string, port: number): { tcp: Deno.Listener; udp: Deno.DatagramConn } {
  // Port 0: let TCP pick, then take the same number for UDP; another socket may hold it, so retry.
  for (let attempt = 0;; attempt++) {
    const tcp = Deno.listen({ hostname, port, transport: "tcp" });
    const p = (tcp.addr as Deno.NetAddr).port;
    try {
      const udp = Deno.listenDatagram({ hostname, port: p, transport: "udp" });
      return { tcp, udp };
    } catch (e) {
      tcp.close();
      if (port !== 0 || attempt >= 20 || !(e instanceof Deno.errors.AddrInUse)) throw e;
    }
  }
}

/** Binds UDP and TCP and starts answering. */
export function startDnsServer(svc: DiscoveryService, o: DnsServerOptions): DnsServer {
  const { tcp, udp } = bind(o.hostname, o.port);
  const idleMs = o.tcpIdleMs ?? TCP_IDLE_MS;
  const conns = new Set<Deno.Conn>();
  let closed = false;
  let inflight = 0;

  const udpLoop = (async () => {
    while (!closed) {
      let msg: [Uint8Array, Deno.Addr];
      try {
        msg = await udp.receive();
      } catch (e) {
        if (closed) return;
        o.log?.warn(`DNS UDP receive: ${(e as Error).message}`);
        continue;
      }
      if (inflight >= MAX_UDP_INFLIGHT) {
        svc.metrics.dnsDropped.inc({ reason: "udp_overload" });
        continue;
      }
      inflight++;
      const [data, from] = msg;
      // Not awaited: a slow store (Redis) must not hold up the next datagram; the send is not awaited either.
      svc.dns(data, "udp", "udp").then((reply) => {
        inflight--;
        if (reply && !closed) udp.send(reply.bytes, from).catch(() => {});
      }, (e) => {
        inflight--;
        o.log?.debug(`DNS UDP reply: ${(e as Error).message}`);
      });
    }
  })();

  const serveConn = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(2 + MAX_TCP_QUERY);
    let have = 0;
    let timer = setTimeout(() => conn.close(), idleMs);
    try {
      for (;;) {
        // Answer every complete query already buffered.
        while (have >= 2) {
          const len = (buf[0]! << 8) | buf[1]!;
          if (len > MAX_TCP_QUERY) {
            svc.metrics.dnsDropped.inc({ reason: "tcp_oversize" });
            return;
          }
          if (have < 2 + len) break;
          const reply = await svc.dns(buf.slice(2, 2 + len), "stream", "tcp");
          buf.copyWithin(0, 2 + len, have);
          have -= 2 + len;
          if (reply) {
            const out = new Uint8Array(2 + reply.bytes.length);
            out[0] = reply.bytes.length >> 8;
            out[1] = reply.bytes.length & 0xff;
            out.set(reply.bytes, 2);
            for (let off = 0; off < out.length;) off += await conn.write(out.subarray(off));
          }
          clearTimeout(timer);
          timer = setTimeout(() => conn.close(), idleMs);
        }
        const n = await conn.read(buf.subarray(have));
        if (n === null) return;
        have += n;
      }
    } catch {
      // reset, or closed by the idle timer or shutdown
    } finally {
      clearTimeout(timer);
      conns.delete(conn);
      svc.metrics.tcpConnections = conns.size;
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  };

  const tcpLoop = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await tcp.accept();
      } catch (e) {
        if (closed) return;
        o.log?.warn(`DNS TCP accept: ${(e as Error).message}`);
        continue;
      }
      if (conns.size >= MAX_TCP_CONNECTIONS) {
        svc.metrics.dnsDropped.inc({ reason: "tcp_connection_cap" });
        conn.close();
        continue;
      }
      conns.add(conn);
      svc.metrics.tcpConnections = conns.size;
      serveConn(conn);
    }
  })();

  const addr = tcp.addr as Deno.NetAddr;
  o.log?.info(
    `DNS listening on ${addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname}:${addr.port} (UDP and TCP)`,
  );
  return {
    addr: { hostname: addr.hostname, port: addr.port },
    async close() {
      closed = true;
      tcp.close();
      udp.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await Promise.allSettled([udpLoop, tcpLoop]);
    },
  };
}
