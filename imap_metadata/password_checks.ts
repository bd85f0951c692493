/**
 * @module
 * Password checks of standalone mode (`login = users`), wired from the pure
 * parts in `login_guard.ts` and `password.ts` (issue 9):
 *
 * 1. a source with recent failures first waits its back-off
 *    ({@link FailureBackoff});
 * 2. the check takes a place in the bounded, per-source-fair
 *    {@link CheckQueue}, or is refused at once (`unavailable`, counted in
 *    `imap_password_checks_rejected_total`, and as a failure for the
 *    source's back-off so that a refused crowd cannot retry in a tight loop);
 * 3. an unknown user is checked against a dummy hash of the same cost, so
 *    unknown and wrong-password cost the same PBKDF2 work;
 * 4. a failure is logged at info, fail2ban-friendly:
 *    `imap login failed: user="<escaped>" source=<ip>`, and counted in
 *    `imap_login_failures_total`.
 *
 * Shutdown ({@link PasswordChecks.close}) drops waiting checks; a session
 * whose signal fires stops waiting for a running one (PBKDF2 cannot be
 * cancelled, but nothing waits for it, so the process can exit).
 */

import type { Logger } from "../log/mod.ts";
import { sleep } from "./conn.ts";
import { CheckQueue, type CheckQueueLimits, FailureBackoff, quoteForLog, sourceKey } from "./login_guard.ts";
import type { ImapMetrics } from "./metrics.ts";
import { dummyHashFor, verifyPassword } from "./password.ts";

/** Outcome of {@link PasswordChecks.check}. */
export type CheckResult = "ok" | "failed" | "unavailable" | "aborted";

/** Wiring of {@link PasswordChecks}. */
export interface PasswordChecksOptions {
  /** `[imap.users]`: user name → hash. */
  users: ReadonlyMap<string, string>;
  /** Concurrency and queue size. */
  limits: CheckQueueLimits;
  /** Where the failure line goes. */
  log: Logger;
  /** Counters. */
  metrics: ImapMetrics;
  /** Verifier (tests count the work it is given). */
  verify?: (password: string, hash: string) => Promise<boolean>;
  /** Per-source failure memory (tests pass a faster one). */
  backoff?: FailureBackoff;
  /** Clock, ms. */
  now?: () => number;
}

/** Resolves with "aborted" when `signal` fires; `dispose` removes the listener. */
function whenAborted(signal: AbortSignal): { promise: Promise<"aborted">; dispose: () => void } {
  const { promise, resolve } = Promise.withResolvers<"aborted">();
  const on = () => resolve("aborted");
  if (signal.aborted) resolve("aborted");
  else signal.addEventListener("abort", on, { once: true });
  return { promise, dispose: () => signal.removeEventListener("abort", on) };
}

/** The service's password checker; one per IMAP service. */
export class PasswordChecks {
  readonly #users: ReadonlyMap<string, string>;
  readonly #dummy: string;
  readonly #queue: CheckQueue;
  readonly #backoff: FailureBackoff;
  readonly #verify: (password: string, hash: string) => Promise<boolean>;
  readonly #log: Logger;
  readonly #metrics: ImapMetrics;
  readonly #now: () => number;
  readonly #closing = new AbortController();

  /** @param opts see {@link PasswordChecksOptions} */
  constructor(opts: PasswordChecksOptions) {
    this.#users = opts.users;
    this.#dummy = dummyHashFor(opts.users.values());
    this.#queue = new CheckQueue(opts.limits);
    this.#backoff = opts.backoff ?? new FailureBackoff();
    this.#verify = opts.verify ?? verifyPassword;
    this.#log = opts.log;
    this.#metrics = opts.metrics;
    this.#now = opts.now ?? Date.now;
  }

  /** Checks running and waiting now. */
  get load(): { running: number; pending: number } {
    return { running: this.#queue.running, pending: this.#queue.pending };
  }

  /**
   * Checks a login.
   *
   * @param ip the client's address (as logged; sources are grouped by {@link sourceKey})
   * @param signal the session ended: stop waiting
   */
  async check(user: string, password: string, ip: string, signal: AbortSignal): Promise<CheckResult> {
    const stop = AbortSignal.any([signal, this.#closing.signal]);
    if (stop.aborted) return "aborted";
    const source = sourceKey(ip);
    const wait = this.#backoff.waitMs(source, this.#now());
    if (wait > 0) await sleep(wait, stop);
    if (stop.aborted) return "aborted";
    const stored = this.#users.get(user);
    const hash = stored ?? this.#dummy;
    const aborted = whenAborted(stop);
    let verdict: boolean | "unavailable" | "aborted";
    try {
      verdict = await Promise.race([
        this.#queue.run(
          source,
          stop,
          () => this.#verify(password, hash).catch(() => false),
          !this.#backoff.hasFailures(source, this.#now()),
        ),
        aborted.promise,
      ]);
    } finally {
      aborted.dispose();
    }
    if (verdict === "aborted") return "aborted";
    if (verdict === "unavailable") {
      this.#metrics.c.passwordChecksRejected++;
      // Counts for the back-off (not as a failed login): otherwise a refused crowd retries in a tight loop.
      this.#backoff.failed(source, this.#now());
      return "unavailable";
    }
    if (verdict && stored !== undefined) {
      this.#backoff.succeeded(source);
      return "ok";
    }
    this.#backoff.failed(source, this.#now());
    this.#metrics.c.loginFailures++;
    this.#log.info(`imap login failed: user=${quoteForLog(user)} source=${ip}`);
    return "failed";
  }

  /** Drops waiting checks and makes every pending {@link check} return "aborted" now. */
  close(): void {
    this.#closing.abort();
    this.#queue.close();
  }
}
