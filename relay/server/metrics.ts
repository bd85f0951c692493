/**
 * @module
 * Relay counters with upstream's names (spec §5, group `relayserver`,
 * exposed as `relayserver_<name>_total`), plus gauges for connected clients
 * per generation, rendered as OpenMetrics text.
 *
 * Counters are plain number fields so the hot path pays one property
 * increment; rendering walks them only when scraped.
 */

import { type Counts, type Family, type Gauge, renderFamilies, renderMetrics, zeroCounts } from "../../metrics/mod.ts";

/** One exported counter: upstream name and help text. */
const COUNTERS = {
  bytesSent: ["bytes_sent", "Datagram bytes written to clients"],
  bytesRecv: ["bytes_recv", "Datagram bytes received from clients"],
  sendPacketsSent: ["send_packets_sent", "Datagrams written to clients"],
  sendPacketsRecv: ["send_packets_recv", "Datagrams received from clients"],
  sendPacketsDropped: ["send_packets_dropped", "Datagrams dropped: no such client, queue full, or too large"],
  otherPacketsSent: ["other_packets_sent", "Control frames written to clients"],
  otherPacketsRecv: ["other_packets_recv", "Control frames received from clients"],
  otherPacketsDropped: ["other_packets_dropped", "Control frames dropped because a queue was full"],
  gotPing: ["got_ping", "Pings received from clients"],
  sentPong: ["sent_pong", "Pongs sent to clients"],
  unknownFrames: ["unknown_frames", "Frames of a known but unhandled type"],
  connsRxRatelimited: ["conns_rx_ratelimited", "Times a connection was paused by the receive rate limit"],
  bytesRxRatelimited: ["bytes_rx_ratelimited", "Bytes whose reading was delayed by the receive rate limit"],
  accepts: ["accepts", "Clients authenticated and registered"],
  disconnects: ["disconnects", "Registered clients that disconnected"],
  uniqueClientKeys: ["unique_client_keys", "Keys that connected while not already connected"],
  websocketAccepts: ["websocket_accepts", "Relay connections upgraded over WebSocket"],
  relayAccepts: ["relay_accepts", "Relay connections upgraded with `iroh derp http`"],
  clientsInactiveAdded: ["clients_inactive_added", "Connections demoted by a newer one with the same key"],
  clientsInactiveRemoved: ["clients_inactive_removed", "Inactive connections promoted or closed"],
  authFailures: ["auth_failures", "Handshakes refused: bad signature, malformed frame or access denied"],
  meshForwarded: ["mesh_datagrams_forwarded", "Datagrams sent to another relay instance"],
  meshReceived: ["mesh_datagrams_received", "Datagrams from another relay instance delivered here"],
  meshDropped: ["mesh_datagrams_dropped", "Datagrams from another relay instance for a key not connected here"],
  httpConnections: ["http_connections", "TCP connections accepted on relay ports"],
  httpConnectionsClosed: ["http_connections_closed", "TCP connections closed on relay ports"],
  httpConnectionsErrored: ["http_connections_errored", "TCP connections ended by an error or timeout"],
  acceptErrors: ["accept_errors", "Failed accepts on relay ports (mostly: out of file descriptors)"],
} as const;

/** Counter fields by their code name. */
export type RelayCounters = Counts<typeof COUNTERS>;

export type { Family, Gauge };

/** Disconnect reason labels, in render order; anything unrecognised is `other`. */
export const DISCONNECT_REASONS = [
  "control_queue_full",
  "frame_too_large",
  "write_timeout",
  "write_failed",
  "protocol_error",
  "handshake_failed",
  "establish_timeout",
  "ping_timeout",
  "access_denied",
  "replaced",
  "peer_closed",
  "connection_lost",
  "shutdown",
  "other",
] as const;

/** A `relayserver_disconnects_by_reason_total` label. */
export type DisconnectReason = typeof DISCONNECT_REASONS[number];

/**
 * The label of a close reason (the free text clients close with, which
 * also goes to debug logs): a small fixed set, so a peer cannot grow the
 * label space.
 */
export function disconnectReason(reason: string): DisconnectReason {
  if (reason.startsWith("control queue full")) return "control_queue_full";
  if (/exceeds|too large|too long/i.test(reason)) return "frame_too_large";
  if (reason.startsWith("write timeout")) return "write_timeout";
  if (reason.startsWith("write failed")) return "write_failed";
  if (reason.startsWith("handshake")) return "handshake_failed";
  if (/protocol error|invalid key|too many unprocessed/.test(reason)) return "protocol_error";
  if (reason.startsWith("establish timeout")) return "establish_timeout";
  if (reason.startsWith("ping timeout")) return "ping_timeout";
  if (/access (denied|revoked)/.test(reason)) return "access_denied";
  if (/^replaced|another relay instance/.test(reason)) return "replaced";
  if (/closed by peer|^connection ended/.test(reason)) return "peer_closed";
  if (/^connection lost|^read failed/.test(reason)) return "connection_lost";
  if (/shutting down/.test(reason)) return "shutdown";
  return "other";
}

/** The relay's counters and gauges. */
export class RelayMetrics {
  /** Counter values, incremented directly on the hot path. */
  readonly c: RelayCounters = zeroCounts(COUNTERS);
  /** Closed relay connections (registered or not) by {@link DisconnectReason}. */
  readonly disconnectsByReason: Record<DisconnectReason, number> = Object.fromEntries(
    DISCONNECT_REASONS.map((r) => [r, 0]),
  ) as Record<DisconnectReason, number>;
  #gauges: Gauge[] = [];
  #families: Family[] = [];

  /** Counts a closed relay connection under its reason label. */
  countDisconnect(reason: string): void {
    this.disconnectsByReason[disconnectReason(reason)]++;
  }

  /** Adds a gauge read at scrape time. */
  addGauge(g: Gauge): void {
    this.#gauges.push(g);
  }

  /** Adds a family rendered under its own name, without the prefix (see `metrics/family.ts`). */
  addFamily(f: Family): void {
    this.#families.push(f);
  }

  /** OpenMetrics text of everything, without the final `# EOF`. */
  render(prefix = "relayserver"): string {
    let out = renderMetrics(prefix, COUNTERS, this.c, this.#gauges);
    const full = `${prefix}_disconnects_by_reason`;
    out += `# HELP ${full} Relay connections closed, by reason.\n# TYPE ${full} counter\n`;
    for (const r of DISCONNECT_REASONS) out += `${full}_total{reason="${r}"} ${this.disconnectsByReason[r]}\n`;
    return out + renderFamilies(this.#families);
  }
}
