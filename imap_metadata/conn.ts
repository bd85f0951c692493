/**
 * @module
 * Socket plumbing shared by the standalone listener and the proxy: the
 * minimal {@link ByteConn} surface, a serialized {@link Writer}, the
 * per-session {@link SessionTimer} (login and idle deadlines) and a
 * cancellable {@link sleep}. Transport code: timers live here, never in the
 * pure protocol files.
 */

/** What a session needs from a socket; `Deno.Conn`, `Deno.TlsConn` and the node:tls adapter have it. */
export interface ByteConn {
  /** Reads into `p`; null at EOF. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; returns how much. */
  write(p: Uint8Array): Promise<number>;
  /** Closes both directions. */
  close(): void;
}

/** Closes a connection, ignoring "already closed". */
export function closeQuietly(conn: ByteConn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/**
 * Waits `ms`, or less if `signal` aborts (then resolves, never rejects), so
 * a closing session never leaves a timer behind.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(id);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const id = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Waits for `p` (never rejects), but at most `ms`; the timer is always cleared. */
export async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let id: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([p.catch(() => {}), new Promise<void>((r) => id = setTimeout(r, ms))]);
  } finally {
    clearTimeout(id);
  }
}

/**
 * Serializes writes to one connection: bytes from several producers (the
 * proxy's two pumps, a timeout's BYE) never interleave, and a write may
 * first wait (failed-login delay) without reordering later ones.
 */
export class Writer {
  readonly #conn: ByteConn;
  readonly #signal: AbortSignal;
  #tail: Promise<void> = Promise.resolve();
  #failed = false;

  /** @param conn the socket; @param signal aborts pending delays when the session ends */
  constructor(conn: ByteConn, signal: AbortSignal) {
    this.#conn = conn;
    this.#signal = signal;
  }

  /** True once a write failed (peer gone). */
  get failed(): boolean {
    return this.#failed;
  }

  /**
   * Queues `bytes` after everything queued before.
   * @returns when written; never rejects (a failure sets {@link failed})
   */
  write(bytes: Uint8Array, delayMs = 0): Promise<void> {
    if (bytes.length === 0 && delayMs === 0) return this.#tail;
    this.#tail = this.#tail.then(async () => {
      if (this.#failed) return;
      if (delayMs > 0) await sleep(delayMs, this.#signal);
      if (this.#signal.aborted) return;
      try {
        let off = 0;
        while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
      } catch {
        this.#failed = true;
      }
    });
    return this.#tail;
  }

  /** Resolves when everything queued so far is written (or failed). */
  idle(): Promise<void> {
    return this.#tail;
  }
}

/** Timeouts of one session, ms. */
export interface TimerLimits {
  /** Until login succeeds. */
  loginTimeoutMs: number;
  /** Without activity. */
  idleTimeoutMs: number;
}

/**
 * One timer per session for two deadlines: login (from accept until
 * {@link SessionTimer.authenticated}) and idle (from the last
 * {@link SessionTimer.activity}). Activity only stores a timestamp; the
 * timer re-arms itself when it fires early, so busy sessions cost no timer
 * churn.
 */
export class SessionTimer {
  readonly #limits: TimerLimits;
  readonly #onTimeout: (reason: "login" | "idle") => void;
  readonly #loginDeadline: number;
  #authenticated = false;
  #last: number;
  #id: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  /** Starts both deadlines now. */
  constructor(limits: TimerLimits, onTimeout: (reason: "login" | "idle") => void) {
    this.#limits = limits;
    this.#onTimeout = onTimeout;
    this.#last = performance.now();
    this.#loginDeadline = this.#last + limits.loginTimeoutMs;
    this.#arm();
  }

  /** Records traffic: pushes the idle deadline out. */
  activity(): void {
    this.#last = performance.now();
  }

  /** Login succeeded: only the idle deadline remains. */
  authenticated(): void {
    this.#authenticated = true;
  }

  /** Cancels the timer for good. */
  stop(): void {
    this.#stopped = true;
    if (this.#id !== undefined) clearTimeout(this.#id);
    this.#id = undefined;
  }

  #next(): { at: number; reason: "login" | "idle" } {
    const idleAt = this.#last + this.#limits.idleTimeoutMs;
    if (!this.#authenticated && this.#loginDeadline <= idleAt) return { at: this.#loginDeadline, reason: "login" };
    return { at: idleAt, reason: "idle" };
  }

  #arm(): void {
    if (this.#stopped) return;
    const { at } = this.#next();
    this.#id = setTimeout(() => {
      this.#id = undefined;
      const { at: due, reason } = this.#next();
      if (performance.now() + 1 >= due) {
        this.#stopped = true;
        this.#onTimeout(reason);
      } else {
        this.#arm();
      }
    }, Math.max(1, at - performance.now()));
  }
}
