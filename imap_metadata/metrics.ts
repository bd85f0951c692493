/**
 * @module
 * IMAP listener counters, rendered as OpenMetrics text with the `imap_`
 * prefix (no `# EOF`: the relay's metrics endpoint appends ours to its own,
 * see `main.ts`). Same shape as `relay/server/metrics.ts`: plain number fields on
 * the hot path, text only when scraped.
 */

import { type Counts, type Gauge, renderMetrics, zeroCounts } from "../metrics/mod.ts";

const COUNTERS = {
  sessions: ["sessions", "IMAP connections accepted"],
  sessionsRefused: ["sessions_refused", "Connections refused with BYE because max_sessions was reached"],
  commands: ["commands", "Client commands handled by us (all in standalone mode, intercepted ones in proxy mode)"],
  getmetadata: ["getmetadata", "GETMETADATA commands answered"],
  loginsOk: ["logins_ok", "Successful logins"],
  loginsFailed: ["logins_failed", "Failed logins"],
  badCommands: ["bad_commands", "Commands or lines answered BAD"],
  limitErrors: ["limit_errors", "Lines or literals over the configured limits"],
  timeouts: ["timeouts", "Sessions closed by the login or idle timeout"],
  sessionErrors: ["session_errors", "Sessions ended by a socket or TLS error"],
  upstreamErrors: ["upstream_errors", "Proxy sessions whose upstream could not be reached or failed"],
  loginFailures: [
    "login_failures",
    "Failed logins, each logged at info as 'imap login failed: user=... source=...' (standalone mode)",
  ],
  passwordChecksRejected: [
    "password_checks_rejected",
    "Logins answered NO [UNAVAILABLE] because max_pending_password_checks (or a source's share) was full",
  ],
} as const;

/** Why we ended a session (the `reason` label of `imap_disconnects_by_reason_total`). */
export type DisconnectReason =
  | "reply_queue_full"
  | "login_timeout"
  | "idle_timeout"
  | "line_too_long"
  | "literal_too_large"
  | "too_many_errors"
  | "protocol_error";

const DISCONNECT_REASONS: readonly DisconnectReason[] = [
  "reply_queue_full",
  "login_timeout",
  "idle_timeout",
  "line_too_long",
  "literal_too_large",
  "too_many_errors",
  "protocol_error",
];

/** Counter fields by code name. */
export type ImapCounters = Counts<typeof COUNTERS>;

/** The IMAP listener's counters and its active-session gauge. */
export class ImapMetrics {
  /** Counter values. */
  readonly c: ImapCounters = zeroCounts(COUNTERS);
  /** Sessions open right now (owned by the listener). */
  active = 0;
  /** Sessions we ended, by reason. */
  readonly disconnects: Record<DisconnectReason, number> = Object.fromEntries(
    DISCONNECT_REASONS.map((r) => [r, 0]),
  ) as Record<DisconnectReason, number>;
  readonly #gauges: Gauge[] = [{
    name: "sessions_active",
    help: "IMAP sessions open now",
    read: () => [[{}, this.active]],
  }];

  /** OpenMetrics lines, without `# EOF`. */
  render(prefix = "imap"): string {
    const name = `${prefix}_disconnects_by_reason`;
    let by = `# HELP ${name} Sessions the server ended, by reason.\n# TYPE ${name} counter\n`;
    for (const r of DISCONNECT_REASONS) by += `${name}_total{reason="${r}"} ${this.disconnects[r]}\n`;
    return renderMetrics(prefix, COUNTERS, this.c, this.#gauges) + by;
  }
}
