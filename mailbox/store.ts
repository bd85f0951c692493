/**
 * @module
 * The mailbox's storage interface, met by the embedded SQLite store
 * (`store_sqlite.ts`, one instance) and the Redis store (`store_redis.ts`,
 * several instances sharing one Redis). Both run one shared test suite
 * (`store_cases.ts`).
 *
 * Rules every store keeps, each atomically:
 * - {@link MailboxStore.deposit} de-duplicates on (origin, txnID, recipient)
 *   before anything else, then checks the recipient's quota (entries and
 *   bytes) and the total size, then stores. A result of `stored` or
 *   `duplicate` means the entry is durable: the caller answers 200.
 * - {@link MailboxStore.next} deletes the acknowledged entry only if it is
 *   in the caller's own mailbox (Dendrite deleted any entry by id, §2.7),
 *   then returns the oldest unexpired entry, which stays until acknowledged
 *   (delivery at least once).
 * - Entry ids are positive, increase, and are never reused, so a stale
 *   acknowledgement can never delete a newer entry.
 * - Expired entries are never returned; {@link MailboxStore.expire} removes them.
 */

/** One deposit. */
export interface Deposit {
  /** Recipient server name (`userID`'s domain). */
  recipient: string;
  /** Authenticated sender. */
  origin: string;
  /** `{txnID}` from the path. */
  txnId: string;
  /** The transaction JSON returned later. */
  body: string;
  /** UTF-8 size of {@link body}, bytes. */
  bytes: number;
  /** Now, ms since the epoch (a de-duplication record older than its expiry no longer counts). */
  now: number;
  /** When it expires, ms since the epoch. */
  expiresAt: number;
}

/** Quotas checked by {@link MailboxStore.deposit}. */
export interface DepositLimits {
  /** Most entries one recipient may have waiting. */
  maxEntries: number;
  /** Most bytes one recipient may have waiting. */
  maxBytes: number;
  /** Most bytes all mailboxes together may hold. */
  maxTotalBytes: number;
}

/** Which quota refused a deposit. */
export type QuotaKind = "entries" | "bytes" | "total";

/** Outcome of {@link MailboxStore.deposit}. */
export type DepositResult =
  | { status: "stored"; id: number }
  | { status: "duplicate"; id: number }
  | { status: "full"; quota: QuotaKind };

/** A waiting entry. */
export interface StoredEntry {
  /** Entry id (`entry_id`). */
  id: number;
  /** Sender. */
  origin: string;
  /** The transaction JSON. */
  body: string;
}

/** Outcome of {@link MailboxStore.next}. */
export interface NextResult {
  /** True if the acknowledged entry existed in this mailbox and was deleted. */
  acked: boolean;
  /** Oldest unexpired entry, or `null` if none is waiting. */
  entry: StoredEntry | null;
  /** Expired entries removed on the way. */
  expired: number;
}

/** Totals over all mailboxes. */
export interface StoreStats {
  /** Entries waiting. */
  entries: number;
  /** Their bytes. */
  bytes: number;
}

/** See the module doc. */
export interface MailboxStore {
  /** `sqlite` or `redis`, for logs and `/healthz`. */
  readonly kind: string;
  /** Stores `d` unless it is a duplicate or over a quota. */
  deposit(d: Deposit, limits: DepositLimits): Promise<DepositResult>;
  /**
   * Deletes entry `ack` if `recipient` owns it (0: none), then returns the
   * oldest entry of `recipient` not expired at `now` (ms).
   */
  next(recipient: string, ack: number, now: number): Promise<NextResult>;
  /** Removes up to `max` entries expired at `now`; returns how many. */
  expire(now: number, max: number): Promise<number>;
  /** Totals over all mailboxes. */
  stats(): Promise<StoreStats>;
  /** Closes the store (pending writes finish first). */
  close(): Promise<void>;
}
