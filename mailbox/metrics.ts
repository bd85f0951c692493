/**
 * @module
 * The mailbox's counters and gauges, rendered as OpenMetrics text next to
 * the relay's. Refusals are one counter with a `reason` label.
 */

import { type Counts, type Gauge, renderMetrics, zeroCounts } from "./_deps.ts";

/** Counter definitions. */
export const MAILBOX_COUNTERS = {
  stored: ["stored", "Transactions stored for an offline recipient"],
  duplicates: ["duplicates", "Deposits answered 200 without storing: same origin, txnID and recipient as a stored one"],
  delivered: ["delivered", "Entries acknowledged by their recipient and deleted"],
  served: ["served", "relay_txn replies that carried a transaction (a retried one counts again)"],
  expired: ["expired", "Entries deleted unread after expiry_secs"],
} as const;

/** Why a request was refused (the `reason` label). */
export const REFUSAL_REASONS = [
  "auth", // missing or bad X-Matrix signature, wrong destination
  "forbidden", // relay_txn for another server's mailbox
  "bad_request", // malformed JSON, wrong Content-Type, bad user id, too many PDUs/EDUs
  "too_large", // body over max_body_bytes
  "quota", // recipient's entries or bytes, or the total size
  "rate", // sender over its deposit rate
  "store", // the store failed (500)
] as const;

/** One of {@link REFUSAL_REASONS}. */
export type RefusalReason = typeof REFUSAL_REASONS[number];

/** Live values; the store totals are refreshed by the service. */
export class MailboxMetrics {
  /** Counters. */
  readonly c: Counts<typeof MAILBOX_COUNTERS> = zeroCounts(MAILBOX_COUNTERS);
  /** Refusals by reason. */
  readonly refused: Record<RefusalReason, number> = Object.fromEntries(
    REFUSAL_REASONS.map((r) => [r, 0]),
  ) as Record<RefusalReason, number>;
  /** Entries waiting, as last read from the store. */
  queuedEntries = 0;
  /** Bytes waiting, as last read from the store. */
  queuedBytes = 0;

  /** OpenMetrics text, without `# EOF`. */
  render(): string {
    const gauges: Gauge[] = [
      { name: "queued_entries", help: "Entries waiting in all mailboxes", read: () => [[{}, this.queuedEntries]] },
      { name: "queued_bytes", help: "Bytes waiting in all mailboxes", read: () => [[{}, this.queuedBytes]] },
    ];
    let out = renderMetrics("mailbox", MAILBOX_COUNTERS, this.c, gauges);
    out += "# HELP mailbox_refused Requests refused, by reason.\n# TYPE mailbox_refused counter\n";
    for (const r of REFUSAL_REASONS) out += `mailbox_refused_total{reason="${r}"} ${this.refused[r]}\n`;
    return out;
  }
}
