/**
 * @module
 * "Did you mean …?" for unknown config keys: the closest known key by edit
 * distance (optimal string alignment, so a swapped pair of letters counts
 * once), ignoring case and `-` versus `_`. Pure.
 */

/** Edit distance between `a` and `b` (insert, delete, substitute, swap neighbours). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1, cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, () => new Array<number>(cols).fill(0));
  for (let i = 0; i < rows; i++) d[i]![0] = i;
  for (let j = 0; j < cols; j++) d[0]![j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

function normalise(key: string): string {
  return key.toLowerCase().replaceAll("-", "_");
}

/**
 * The known key closest to `key`, if it is close enough to be a typo: at
 * most one edit per three characters (at least one), after lowercasing and
 * reading `-` as `_`.
 *
 * @example
 * ```ts
 * import { closestKey } from "./suggest.ts";
 * if (closestKey("http_bind_adr", ["http_bind_addr", "enable_relay"]) !== "http_bind_addr") throw new Error();
 * ```
 */
export function closestKey(key: string, known: Iterable<string>): string | undefined {
  const k = normalise(key);
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const c = normalise(candidate);
    if (c === k) return candidate;
    const limit = Math.max(1, Math.floor(Math.max(c.length, k.length) / 3));
    const dist = editDistance(k, c);
    if (dist <= limit && dist < bestDistance) {
      best = candidate;
      bestDistance = dist;
    }
  }
  return best;
}
