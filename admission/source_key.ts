/**
 * @module
 * Which "source" a peer address belongs to for per-source limits: an IPv4
 * address is its own source; an IPv6 address counts as its /64 (one
 * subscriber's prefix, which a single host can roam across freely); an
 * IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack `[::]`
 * listener reports for IPv4 peers) is the IPv4 address. Pure string code.
 */

/**
 * The per-source key of a peer address.
 *
 * @example
 * ```ts
 * import { sourceKey } from "./source_key.ts";
 * if (sourceKey("2001:db8:1:2:aaaa::1") !== "2001:db8:1:2::/64") throw new Error("bad /64");
 * if (sourceKey("::ffff:192.0.2.7") !== "192.0.2.7") throw new Error("bad mapped");
 * ```
 * @param address IP address text as a socket reports it (brackets and zone allowed)
 * @returns the IPv4 address, `<first four hextets>::/64`, or the input for anything else
 */
export function sourceKey(address: string): string {
  let a = address;
  if (a.startsWith("[") && a.endsWith("]")) a = a.slice(1, -1);
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  if (!a.includes(":")) return a;
  const groups = expandIpv6(a);
  if (groups === null) return address;
  // ::ffff:a.b.c.d (mapped) → the IPv4 address.
  if (
    groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff
  ) {
    const hi = groups[6]!;
    const lo = groups[7]!;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (with `::` and a trailing dotted quad), or null. */
function expandIpv6(a: string): number[] | null {
  let text = a;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  const last = text.slice(lastColon + 1);
  if (last.includes(".")) {
    const q = last.split(".").map(Number);
    if (q.length !== 4 || q.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return null;
    tail.push((q[0]! << 8) | q[1]!, (q[2]! << 8) | q[3]!);
    text = text.slice(0, lastColon + 1) + "0";
    // "0" placeholder stands for the quad's first group; the second is appended below.
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parse = (s: string): number[] | null => {
    if (s === "") return [];
    const out: number[] = [];
    for (const g of s.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  if (head === null || rest === null) return null;
  if (tail.length) {
    // Replace the placeholder with the two groups of the quad.
    const arr = halves.length === 2 ? rest : head;
    arr.pop();
    arr.push(...tail);
  }
  const missing = 8 - head.length - rest.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  return [...head, ...new Array<number>(missing).fill(0), ...rest];
}
