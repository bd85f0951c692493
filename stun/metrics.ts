/**
 * @module
 * STUN counters with upstream's names (iroh-relay v0.35.0
 * `server/metrics.rs`, group `stun`, exposed as `stun_<name>_total`) and
 * their meaning there: every datagram is a request; non-STUN and invalid
 * ones are bad requests; a success is a reply fully sent, by the source's
 * address family; failures are socket errors. `ratelimited` is ours.
 */

import { type Counts, renderMetrics, zeroCounts } from "../metrics/mod.ts";

const COUNTERS = {
  requests: ["requests", "Datagrams received on the STUN port"],
  ipv4Success: ["ipv4_success", "Binding requests from IPv4 sources answered"],
  ipv6Success: ["ipv6_success", "Binding requests from IPv6 sources answered"],
  badRequests: ["bad_requests", "Datagrams dropped: not a well-formed Binding request we answer"],
  failures: ["failures", "Socket errors receiving or sending"],
  ratelimited: ["ratelimited", "Binding requests dropped by the per-source or global rate limit"],
} as const;

/** Counter fields by their code name. */
export type StunCounters = Counts<typeof COUNTERS>;

/** The STUN server's counters. */
export class StunMetrics {
  /** Counter values. */
  readonly c: StunCounters = zeroCounts(COUNTERS);

  /** OpenMetrics text, without the final `# EOF`. */
  render(): string {
    return renderMetrics("stun", COUNTERS, this.c);
  }
}
