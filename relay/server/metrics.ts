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

/** The relay's counters and gauges. */
export class RelayMetrics {
  /** Counter values, incremented directly on the hot path. */
  readonly c: RelayCounters = zeroCounts(COUNTERS);
  #gauges: Gauge[] = [];
  #families: Family[] = [];

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
    return renderMetrics(prefix, COUNTERS, this.c, this.#gauges) + renderFamilies(this.#families);
  }
}
