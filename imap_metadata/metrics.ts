/**
 * @module
 * IMAP listener counters, rendered as OpenMetrics text with the `imap_`
 * prefix (no `# EOF`: the relay's metrics endpoint appends ours to its own,
 * see `main.ts`). Same shape as `relay/metrics.ts`: plain number fields on
 * the hot path, text only when scraped.
 */

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
} as const;

/** Counter fields by code name. */
export type ImapCounters = { -readonly [K in keyof typeof COUNTERS]: number };

/** The IMAP listener's counters and its active-session gauge. */
export class ImapMetrics {
  /** Counter values. */
  readonly c: ImapCounters;
  /** Sessions open right now (owned by the listener). */
  active = 0;

  constructor() {
    const c = {} as ImapCounters;
    for (const k of Object.keys(COUNTERS) as (keyof ImapCounters)[]) c[k] = 0;
    this.c = c;
  }

  /** OpenMetrics lines, without `# EOF`. */
  render(prefix = "imap"): string {
    let out = "";
    for (const [k, [name, help]] of Object.entries(COUNTERS)) {
      const full = `${prefix}_${name}`;
      out += `# HELP ${full} ${help}.\n# TYPE ${full} counter\n${full}_total ${this.c[k as keyof ImapCounters]}\n`;
    }
    const g = `${prefix}_sessions_active`;
    out += `# HELP ${g} IMAP sessions open now.\n# TYPE ${g} gauge\n${g} ${this.active}\n`;
    return out;
  }
}
