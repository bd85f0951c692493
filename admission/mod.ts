/**
 * @module
 * Admission control for every listener of the service: who may open a
 * connection, and TLS handshakes that cannot hold a descriptor forever.
 *
 * - {@link AdmissionGate} (pure): per-source concurrent connections (an IPv4
 *   address, or an IPv6 /64) and new connections per second (token bucket),
 *   plus a global cap that keeps a reserve for sources with few
 *   connections. Bounded memory whatever the number of sources.
 * - {@link PlainAcceptor}: admission on a `Deno.listen` listener.
 * - {@link TlsAcceptor}: admission before the handshake, a handshake
 *   deadline that really releases the descriptor, and
 *   {@link TlsAcceptor.setCertificate} for renewals without rebinding.
 * - {@link AdmissionMetrics}: `admission_refused_total{listener,reason}`,
 *   `admission_tls_handshake_timeouts_total{listener}`.
 *
 * @example
 * ```ts
 * import { AdmissionGate, AdmissionMetrics, PlainAcceptor } from "./mod.ts";
 * const gate = new AdmissionGate({ maxConnections: 100, reserve: 10, maxPerSource: 1, perSecond: 10, burst: 10 });
 * const metrics = new AdmissionMetrics();
 * const acceptor = new PlainAcceptor(Deno.listen({ hostname: "127.0.0.1", port: 0 }), { gate, metrics, listener: "relay" });
 * const a = Deno.connect({ port: acceptor.addr.port });
 * const first = await acceptor.accept();
 * const next = acceptor.accept().catch(() => null); // refuses as it goes
 * const b = await Deno.connect({ port: acceptor.addr.port });
 * // b is refused (one connection per source): its socket sees EOF.
 * const eof = await b.read(new Uint8Array(1));
 * first.conn.close();
 * first.ticket.release();
 * (await a).close();
 * b.close();
 * acceptor.close();
 * await next;
 * if (eof !== null || metrics.refusedCount("relay", "source_connections") !== 1) throw new Error("not refused");
 * ```
 */

export { AdmissionGate, type AdmissionLimits, type RefusalReason, RESERVE_SOURCE_MAX, Ticket } from "./gate.ts";
export { sourceKey } from "./source_key.ts";
export { AdmissionMetrics, type ListenerName } from "./metrics.ts";
export { type AcceptedConn, NodeSocketConn } from "./node_conn.ts";
export { type Acceptor, type AdmissionOptions, type Admitted, formatRemote, PlainAcceptor } from "./listener.ts";
export { checkCertificate, TlsAcceptor, type TlsListenOptions } from "./tls_listener.ts";
