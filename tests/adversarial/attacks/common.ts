/**
 * @module
 * What every attack shares: its bounds (duration, abort signal) and the
 * report of what the attacker saw.
 */

/** Bounds shared by every attack. */
export interface Bounds {
  /** Stop after this long, ms. */
  durationMs: number;
  /** Stop when aborted (e.g. the monitor saw RSS over its cap). */
  signal?: AbortSignal;
}

/** What an attacker saw. */
export interface AttackReport {
  /** Connections opened. */
  connections: number;
  /** Connections that failed to open (refused, reset, timed out). */
  connectFailures: number;
  /** Connections the server closed while the attacker kept them. */
  closedByServer: number;
  /** Bytes written. */
  bytesSent: number;
  /** Wall time, ms. */
  ms: number;
  /** Attack-specific observations. */
  notes: Record<string, number | string>;
}

/** Fills an {@link AttackReport}; `t0` is when the attack started. */
export function report(partial: Partial<AttackReport> & { t0: number }): AttackReport {
  return {
    connections: partial.connections ?? 0,
    connectFailures: partial.connectFailures ?? 0,
    closedByServer: partial.closedByServer ?? 0,
    bytesSent: partial.bytesSent ?? 0,
    ms: Math.round(performance.now() - partial.t0),
    notes: partial.notes ?? {},
  };
}

/** True once the attack should stop (aborted or out of time). */
export function over(b: Bounds, t0: number): boolean {
  return b.signal?.aborted === true || performance.now() - t0 >= b.durationMs;
}

/** Resolves after `ms`, or at once when aborted. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done);
  });
}
