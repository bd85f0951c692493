/**
 * @module
 * DNS-over-HTTPS at `/dns-query` (RFC 8484; iroh-dns-server `http/doh.rs
 * @v1.0.3`), answered by the same responder as UDP and TCP.
 *
 * - Wire format: `GET ?dns=<base64url>` or `POST` with the message as
 *   body, when `Accept` is absent, `*\/*` or `application/dns-message`.
 *   GET answers carry `Cache-Control: s-maxage=<lowest answer TTL>`.
 * - JSON (Google's `application/dns-json` form, also
 *   `application/x-javascript`): `GET ?name=…&type=…`.
 * - Any other `Accept` → 406. Bodies over {@link DOH_MAX_BODY} are refused.
 */

import { Buffer } from "node:buffer";
import { type Answer, decodeMessage, encodeMessage } from "./proto/dns_wire.ts";
import { MAX_STREAM_MESSAGE } from "./proto/responder.ts";
import type { DiscoveryService } from "./service.ts";
import { CORS, errorResponse, readBody } from "./http_util.ts";

/** Path served. */
export const DOH_PATH = "/dns-query";
/** Largest DoH request body, bytes (a query is tiny; the limit is the DNS message size). */
export const DOH_MAX_BODY = MAX_STREAM_MESSAGE;

const RCODE_NUM: Record<string, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };
const TYPE_NUM: Record<string, number> = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  ANY: 255,
};

function typeNum(t: string): number {
  return TYPE_NUM[t] ?? (t.startsWith("UNKNOWN_") ? Number(t.slice(8)) : 0);
}

function base64urlDecode(s: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) return null;
  const b = Buffer.from(s, "base64url");
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function jsonData(a: Answer): string {
  const d = (a as { data?: unknown }).data;
  if (a.type === "TXT") {
    const parts = (Array.isArray(d) ? d : [d]) as (Uint8Array | string)[];
    return parts.map((p) => JSON.stringify(typeof p === "string" ? p : new TextDecoder().decode(p))).join(" ");
  }
  if (a.type === "SOA" && d && typeof d === "object") {
    const s = d as {
      mname: string;
      rname: string;
      serial: number;
      refresh: number;
      retry: number;
      expire: number;
      minimum: number;
    };
    return `${s.mname}. ${s.rname}. ${s.serial} ${s.refresh} ${s.retry} ${s.expire} ${s.minimum}`;
  }
  if (typeof d === "string") return a.type === "NS" || a.type === "CNAME" ? `${d}.` : d;
  if (d instanceof Uint8Array) return Buffer.from(d).toString("hex");
  return JSON.stringify(d);
}

function fqdn(n: string): string {
  return n.endsWith(".") ? n : `${n}.`;
}

/** Builds the `/dns-query` handler over `svc`. */
export function dohHandler(svc: DiscoveryService): (req: Request, info: { remote: string }) => Promise<Response> {
  return async (req) => {
    const url = new URL(req.url);
    if (req.method === "OPTIONS") return new Response(null, { status: 204, headers: CORS });
    if (req.method !== "GET" && req.method !== "POST") {
      await req.body?.cancel().catch(() => {});
      return errorResponse(405, "method not allowed", { allow: "GET, POST, OPTIONS" });
    }
    const accept = (req.headers.get("accept") ?? "").toLowerCase();
    const json = accept.includes("application/dns-json") || accept.includes("application/x-javascript");
    const wire = !json &&
      (accept === "" || accept.includes("application/dns-message") || accept.includes("*/*"));
    if (!json && !wire) {
      await req.body?.cancel().catch(() => {});
      return errorResponse(406, "accept application/dns-message or application/dns-json");
    }
    let query: Uint8Array | null;
    if (json) {
      await req.body?.cancel().catch(() => {});
      const name = url.searchParams.get("name");
      const typeText = (url.searchParams.get("type") ?? "A").toUpperCase();
      if (!name || name.length > 253) return errorResponse(400, "missing or overlong name");
      const type = /^\d+$/.test(typeText) ? `UNKNOWN_${typeText}` : typeText;
      try {
        query = encodeMessage({
          id: 0,
          type: "query",
          flags: 0x0100,
          // deno-lint-ignore no-explicit-any
          questions: [{ name, type: type as any, class: "IN" }],
        });
      } catch {
        return errorResponse(400, `cannot build a query for ${JSON.stringify(name.slice(0, 64))}`);
      }
    } else if (req.method === "GET") {
      const q = url.searchParams.get("dns");
      query = q === null || q.length > 2 * DOH_MAX_BODY ? null : base64urlDecode(q);
      if (query === null) return errorResponse(400, "missing or bad dns parameter");
    } else {
      query = await readBody(req, DOH_MAX_BODY);
      if (query === null) return errorResponse(413, "DNS message too large");
    }
    const reply = await svc.dns(query, "stream", "https");
    if (reply === null) return errorResponse(400, "not a DNS query");
    if (!json) {
      const headers: Record<string, string> = { ...CORS, "content-type": "application/dns-message" };
      if (req.method === "GET") {
        const ttls = (decodeMessage(reply.bytes).answers ?? []).map((a) => (a as { ttl?: number }).ttl ?? 0);
        if (ttls.length > 0) headers["cache-control"] = `s-maxage=${Math.min(...ttls)}`;
      }
      return new Response(reply.bytes.slice(), { status: 200, headers });
    }
    const m = decodeMessage(reply.bytes);
    const body = {
      Status: RCODE_NUM[reply.rcode] ?? 2,
      TC: reply.truncated,
      RD: true,
      RA: false,
      AD: false,
      CD: false,
      Question: (m.questions ?? []).map((q) => ({ name: fqdn(q.name), type: typeNum(q.type) })),
      Answer: (m.answers ?? []).map((a) => ({
        name: fqdn(a.name),
        type: typeNum(a.type),
        TTL: (a as { ttl?: number }).ttl ?? 0,
        data: jsonData(a),
      })),
    };
    return new Response(JSON.stringify(body), {
      status: 200,
      headers: { ...CORS, "content-type": "application/dns-json" },
    });
  };
}
