/**
 * @module
 * LIST/LSUB mailbox patterns (RFC 3501 §6.3.8): `*` matches anything, `%`
 * anything but the hierarchy delimiter `/`, every other character itself
 * (case-insensitively, as the old regex did, since `INBOX` is).
 *
 * The pattern comes from the client and may be as long as a line or a
 * literal allows. Translating it to a regex, as before, backtracked
 * exponentially (`"<85 stars>Z"` froze the event loop for 16 s, issue 9).
 * Here one pass over the pattern keeps the set of name prefixes matched so
 * far, so a match costs at most `(pattern length) × (name length + 1)`
 * steps, and the name is ours (`INBOX`): linear in what the client sent.
 * Pure: no I/O.
 */

/** Counts the work of {@link listMatch}, for tests that it stays linear. */
export interface MatchStats {
  /** Inner-loop steps taken so far (added to, so one object can sum several calls). */
  steps: number;
}

const SLASH = 0x2f;

function fold(c: number): number {
  // ASCII case folding is enough: mailbox names we match against are ASCII (INBOX).
  return c >= 0x61 && c <= 0x7a ? c - 0x20 : c;
}

/**
 * True if `name` matches `pattern`.
 *
 * @param stats if given, receives the number of steps taken
 *
 * @example
 * ```ts
 * import { listMatch } from "./list_pattern.ts";
 * if (!listMatch("in%", "INBOX") || listMatch("%/x", "INBOX")) throw new Error("wildcards");
 * if (listMatch("*".repeat(10_000) + "Z", "INBOX")) throw new Error("no Z in INBOX");
 * ```
 */
export function listMatch(pattern: string, name: string, stats?: MatchStats): boolean {
  const m = name.length;
  // reach[j]: the pattern read so far can match name[0, j).
  let reach = new Uint8Array(m + 1);
  let next = new Uint8Array(m + 1);
  reach[0] = 1;
  let steps = 0;
  let alive = true;
  for (let i = 0; i < pattern.length && alive; i++) {
    const p = pattern.charCodeAt(i);
    alive = false;
    if (p === 0x2a /* * */) {
      let carry = 0;
      for (let j = 0; j <= m; j++) {
        carry |= reach[j]!;
        next[j] = carry;
      }
      alive = carry === 1;
    } else if (p === 0x25 /* % */) {
      let carry = 0;
      for (let j = 0; j <= m; j++) {
        if (j > 0 && name.charCodeAt(j - 1) === SLASH) carry = 0;
        carry |= reach[j]!;
        next[j] = carry;
        if (carry) alive = true;
      }
    } else {
      const fp = fold(p);
      next[0] = 0;
      for (let j = 1; j <= m; j++) {
        const v = reach[j - 1]! & (fold(name.charCodeAt(j - 1)) === fp ? 1 : 0);
        next[j] = v;
        if (v) alive = true;
      }
    }
    steps += m + 1;
    [reach, next] = [next, reach];
  }
  if (stats) stats.steps += steps;
  return alive && reach[m] === 1;
}
