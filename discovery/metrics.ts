/**
 * @module
 * Discovery's counters, rendered as OpenMetrics text next to the relay's:
 * - `dns_requests_total{protocol="udp|tcp|https",rcode="NOERROR|…"}`
 * - `dns_dropped_total{reason}`: UDP queries dropped under overload, TCP
 *   connections refused at the cap or closed idle or oversize
 * - `pkarr_publish_total{outcome="stored|stale|invalid|rate_limited|error"}`
 * - `pkarr_get_total{outcome="found|not_found"}`
 * - gauges `discovery_store_packets` (refreshed with each eviction sweep)
 *   and `dns_tcp_connections`.
 * Names carry no service prefix, as the issue and iroh-dns-server name them.
 */

/** Labelled counters: label-set text → value. */
class LabelledCounter {
  readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Record<string, string>, by = 1): void {
    let k = "";
    for (const n in labels) k += `${k ? "," : ""}${n}="${labels[n]}"`;
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  /** Value for one label set (tests). */
  get(labels: Record<string, string>): number {
    return this.values.get(Object.entries(labels).map(([n, v]) => `${n}="${v}"`).join(",")) ?? 0;
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}.\n# TYPE ${this.name} counter\n`;
    for (const [k, v] of this.values) out += `${this.name}_total{${k}} ${v}\n`;
    return out;
  }
}

/** See the module doc. */
export class DiscoveryMetrics {
  /** DNS requests answered, by protocol and rcode. */
  readonly dnsRequests = new LabelledCounter("dns_requests", "DNS requests answered, by protocol and rcode");
  /** DNS work refused for our own protection. */
  readonly dnsDropped = new LabelledCounter("dns_dropped", "DNS queries or connections dropped, by reason");
  /** PUT outcomes. */
  readonly pkarrPublish = new LabelledCounter("pkarr_publish", "pkarr PUTs, by outcome");
  /** GET outcomes. */
  readonly pkarrGet = new LabelledCounter("pkarr_get", "pkarr GETs, by outcome");
  /** Stored packets at the last sweep. */
  storePackets = 0;
  /** Open TCP DNS connections. */
  tcpConnections = 0;

  /** OpenMetrics text without `# EOF`. */
  render(): string {
    return this.dnsRequests.render() + this.dnsDropped.render() + this.pkarrPublish.render() +
      this.pkarrGet.render() +
      `# HELP discovery_store_packets Signed packets stored (at the last eviction sweep).\n` +
      `# TYPE discovery_store_packets gauge\ndiscovery_store_packets ${this.storePackets}\n` +
      `# HELP dns_tcp_connections Open TCP DNS connections.\n# TYPE dns_tcp_connections gauge\n` +
      `dns_tcp_connections ${this.tcpConnections}\n`;
  }
}
