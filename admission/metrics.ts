/**
 * @module
 * Admission counters, shared by every listener of the process and rendered
 * once on the metrics port:
 * - `admission_refused_total{listener,reason}`: connections closed at
 *   accept by a per-source or global limit;
 * - `admission_tls_handshake_timeouts_total{listener}`: TLS handshakes cut
 *   at `tls_handshake_timeout_secs` (the descriptor is released).
 */

import type { RefusalReason } from "./gate.ts";

/** Listener label values. */
export type ListenerName = "relay" | "imap" | "metrics";

const LISTENERS: readonly ListenerName[] = ["relay", "imap", "metrics"];
const REASONS: readonly RefusalReason[] = ["source_connections", "source_rate", "global"];
const TLS_LISTENERS: readonly ListenerName[] = ["relay", "imap"];

/** The counters; see the module doc. */
export class AdmissionMetrics {
  readonly #refused = new Map<string, number>();
  readonly #tlsTimeouts = new Map<ListenerName, number>();

  /** Counts a refused connection. */
  refused(listener: ListenerName, reason: RefusalReason): void {
    const k = `${listener}\u0000${reason}`;
    this.#refused.set(k, (this.#refused.get(k) ?? 0) + 1);
  }

  /** Counts a TLS handshake that hit its deadline. */
  tlsHandshakeTimeout(listener: ListenerName): void {
    this.#tlsTimeouts.set(listener, (this.#tlsTimeouts.get(listener) ?? 0) + 1);
  }

  /** Refusals so far for `listener` (all reasons, or one). */
  refusedCount(listener: ListenerName, reason?: RefusalReason): number {
    let n = 0;
    for (const r of reason ? [reason] : REASONS) n += this.#refused.get(`${listener}\u0000${r}`) ?? 0;
    return n;
  }

  /** TLS handshake timeouts so far for `listener`. */
  tlsHandshakeTimeouts(listener: ListenerName): number {
    return this.#tlsTimeouts.get(listener) ?? 0;
  }

  /** OpenMetrics text (no `# EOF`); every label combination is present from the start. */
  render(): string {
    let out = "# HELP admission_refused Connections refused at accept by a per-source or global limit.\n" +
      "# TYPE admission_refused counter\n";
    for (const l of LISTENERS) {
      for (const r of REASONS) {
        out += `admission_refused_total{listener="${l}",reason="${r}"} ${this.refusedCount(l, r)}\n`;
      }
    }
    out += "# HELP admission_tls_handshake_timeouts TLS handshakes closed at their deadline.\n" +
      "# TYPE admission_tls_handshake_timeouts counter\n";
    for (const l of TLS_LISTENERS) {
      out += `admission_tls_handshake_timeouts_total{listener="${l}"} ${this.tlsHandshakeTimeouts(l)}\n`;
    }
    return out;
  }
}
