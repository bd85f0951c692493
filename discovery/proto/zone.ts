/**
 * @module
 * Which answer a DNS question gets (spec §1.6, `dns/node_zone_handler.rs
 * @v1.0.3`), pure: the packet lookup is injected.
 *
 * - `origins` are tried in config order. Under an origin, the label just
 *   before it must be a z-base-32 key; the labels before that (`_iroh`, or
 *   none for the key's apex) name records inside that key's signed packet.
 * - Records are served with the packet's own TTLs, under the name asked.
 *   Only records that were signed are ever served; SOA and NS inside
 *   packets are dropped, as upstream.
 * - A missing key, name or type → NXDOMAIN (upstream's rule; iroh clients
 *   treat any miss alike). A store error or AXFR/IXFR → REFUSED. A name
 *   under no origin → REFUSED (we are not authoritative for it).
 * - The origin's apex answers SOA and NS from the static zone; other names
 *   under an origin that carry no key are NXDOMAIN. The root origin `"."`
 *   has no apex records of its own (we are never the root).
 */

import type { Answer, Question } from "./dns_wire.ts";
import { decodeMessage } from "./dns_wire.ts";
import { z32DecodeKey } from "./z32.ts";

/** Static zone settings. */
export interface ZoneOptions {
  /** Zone names, lowercase, without the trailing dot; `""` is the root `"."`. */
  origins: readonly string[];
  /** Host names of this zone's name servers (NS records, SOA MNAME); default `ns1.<origin>`. */
  nameservers?: readonly string[];
}

/** SOA/NS TTLs as upstream's static zone: SOA 14 days, NS 12 hours. */
export const SOA_TTL_SECS = 14 * 24 * 3600;
/** See {@link SOA_TTL_SECS}. */
export const NS_TTL_SECS = 12 * 3600;
/**
 * SOA MINIMUM, which bounds how long resolvers cache an NXDOMAIN: short,
 * because a key that was not yet published may be a moment later.
 */
export const NEGATIVE_TTL_SECS = 30;

/** The records of one signed packet, by lowercase name relative to the key (`""` = apex). */
export type PacketRecords = ReadonlyMap<string, readonly Answer[]>;

/**
 * Indexes a packet's answers by relative name. Names not ending in the
 * key's own z32 are unreachable through DNS and left out; so are SOA/NS.
 * @throws {Error} if `dns` does not parse (the store only holds packets that did)
 */
export function packetRecords(dns: Uint8Array, z32: string): PacketRecords {
  const out = new Map<string, Answer[]>();
  for (const a of decodeMessage(dns).answers ?? []) {
    if (a.type === "SOA" || a.type === "NS" || a.type === "OPT") continue;
    let name = a.name.toLowerCase();
    if (name.endsWith(".")) name = name.slice(0, -1);
    let rel: string;
    if (name === z32) rel = "";
    else if (name.endsWith("." + z32)) rel = name.slice(0, -(z32.length + 1));
    else continue;
    let list = out.get(rel);
    if (!list) out.set(rel, list = []);
    list.push(a);
  }
  return out;
}

/** Where a query name falls. */
export type Location =
  | { kind: "key"; origin: string; key: Uint8Array; z32: string; sub: string }
  | { kind: "static"; origin: string; apex: boolean }
  | { kind: "outside" };

/** Normalizes an origin from config: lowercase, no trailing dot, `"."` → `""`. */
export function normalizeOrigin(o: string): string {
  const l = o.toLowerCase();
  return l.endsWith(".") ? l.slice(0, -1) : l;
}

/** Finds the origin, key and relative name of `qname` (any case, with or without the final dot). */
export function locate(qname: string, origins: readonly string[]): Location {
  let name = qname.toLowerCase();
  if (name.endsWith(".")) name = name.slice(0, -1);
  let firstInside: { origin: string; apex: boolean } | undefined;
  for (const origin of origins) {
    let rest: string;
    if (origin === "") rest = name;
    else if (name === origin) rest = "";
    else if (name.endsWith("." + origin)) rest = name.slice(0, -(origin.length + 1));
    else continue;
    if (rest === "") {
      firstInside ??= { origin, apex: true };
      continue;
    }
    const dot = rest.lastIndexOf(".");
    const label = rest.slice(dot + 1);
    const key = z32DecodeKey(label);
    if (key) return { kind: "key", origin, key, z32: label, sub: dot < 0 ? "" : rest.slice(0, dot) };
    firstInside ??= { origin, apex: false };
  }
  return firstInside ? { kind: "static", ...firstInside } : { kind: "outside" };
}

/** What a question gets: rcode plus sections. */
export interface ZoneAnswer {
  /** dns-packet rcode name. */
  rcode: "NOERROR" | "NXDOMAIN" | "REFUSED";
  /** Answer section. */
  answers: Answer[];
  /** Authority section (the SOA on negative answers). */
  authorities: Answer[];
}

/** Looks up the verified records stored for a key, or null; throws on a store error. */
export type RecordLookup = (key: Uint8Array, z32: string) => Promise<PacketRecords | null>;

function nsNames(zone: ZoneOptions, origin: string): string[] {
  return zone.nameservers && zone.nameservers.length > 0 ? [...zone.nameservers] : [`ns1.${origin}`];
}

function soa(zone: ZoneOptions, origin: string): Answer {
  return {
    name: origin,
    type: "SOA",
    ttl: SOA_TTL_SECS,
    class: "IN",
    data: {
      mname: nsNames(zone, origin)[0]!,
      rname: `hostmaster.${origin}`,
      serial: 1,
      refresh: 10800,
      retry: 3600,
      expire: 604800,
      minimum: NEGATIVE_TTL_SECS,
    },
  };
}

function negative(zone: ZoneOptions, origin: string, rcode: "NOERROR" | "NXDOMAIN"): ZoneAnswer {
  return { rcode, answers: [], authorities: origin === "" ? [] : [soa(zone, origin)] };
}

/** Answers one question (class IN or ANY) from the static zone and the stored packets. */
export async function answerQuestion(q: Question, zone: ZoneOptions, lookup: RecordLookup): Promise<ZoneAnswer> {
  const refused: ZoneAnswer = { rcode: "REFUSED", answers: [], authorities: [] };
  const type = q.type as string;
  if (type === "AXFR" || type === "IXFR") return refused;
  if (q.class !== undefined && q.class !== "IN" && q.class !== "ANY") return refused;
  const loc = locate(q.name, zone.origins);
  if (loc.kind === "outside") return refused;
  if (loc.kind === "static") {
    if (!loc.apex) return negative(zone, loc.origin, "NXDOMAIN");
    if (loc.origin === "") return refused;
    const answers: Answer[] = [];
    if (type === "SOA" || type === "ANY") answers.push({ ...soa(zone, loc.origin), name: q.name });
    if (type === "NS" || type === "ANY") {
      for (const ns of nsNames(zone, loc.origin)) {
        answers.push({ name: q.name, type: "NS", ttl: NS_TTL_SECS, class: "IN", data: ns });
      }
    }
    return answers.length > 0 ? { rcode: "NOERROR", answers, authorities: [] } : negative(zone, loc.origin, "NOERROR");
  }
  let records: PacketRecords | null;
  try {
    records = await lookup(loc.key, loc.z32);
  } catch {
    return refused;
  }
  const atName = records?.get(loc.sub);
  const matching = atName?.filter((a) => type === "ANY" || a.type === type) ?? [];
  if (matching.length === 0) return negative(zone, loc.origin, "NXDOMAIN");
  return { rcode: "NOERROR", answers: matching.map((a) => ({ ...a, name: q.name }) as Answer), authorities: [] };
}
