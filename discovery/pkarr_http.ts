/**
 * @module
 * The pkarr relay API iroh publishes to (spec §1.4; iroh-dns-server
 * `http/pkarr.rs @v1.0.3`): `PUT /pkarr/{z32}` with the relay payload
 * `sig | ts | dns`, `GET /pkarr/{z32}` returning it.
 *
 * Replies as upstream: a bad key → 400; a payload that fails a check →
 * 400 `invalid body payload: …` (oversize too: 400, not 413); stored or
 * stale → 204 (a stale PUT changes nothing and is no error); rate-limited
 * PUT → 429 `Too Many Requests! Wait for Ns`; GET → 200
 * `application/x-pkarr-signed-packet`, or 404. A store failure → 500.
 * Errors carry upstream's JSON body. `/pkarr//{z32}` (a base URL with a
 * final slash) is accepted too.
 */

import { PacketError, parseRelayPayload } from "./proto/signed_packet.ts";
import { z32DecodeKey } from "./proto/z32.ts";
import { clientKey } from "./rate_limit.ts";
import { type DiscoveryService, PACKET_VERIFIER } from "./service.ts";
import { CORS, errorResponse, readBody } from "./http_util.ts";

/** Path prefix served. */
export const PKARR_PREFIX = "/pkarr/";
/**
 * Largest PUT body read, bytes. Above the 1072-byte payload limit so an
 * oversize payload still gets upstream's 400; a body beyond this is not
 * read at all (413 from the route layer).
 */
export const PKARR_MAX_BODY = 4096;

/** Builds the `/pkarr/` handler over `svc`. */
export function pkarrHandler(svc: DiscoveryService): (req: Request, info: { remote: string }) => Promise<Response> {
  return async (req, info) => {
    const path = new URL(req.url).pathname;
    const seg = path.slice(PKARR_PREFIX.length).replace(/^\/+/, "");
    if (req.method === "OPTIONS") return new Response(null, { status: 204, headers: CORS });
    if (req.method !== "GET" && req.method !== "PUT") {
      await req.body?.cancel().catch(() => {});
      return errorResponse(405, "method not allowed", { allow: "GET, PUT, OPTIONS" });
    }
    const key = z32DecodeKey(seg);
    // PUT checks the point with the signature (signed_packet.ts); GET only when nothing is stored.
    if (key === null) {
      await req.body?.cancel().catch(() => {});
      return errorResponse(400, `invalid key: ${seg.slice(0, 64)}`);
    }
    if (req.method === "GET") {
      let p;
      try {
        p = await svc.getPacket(key);
      } catch (e) {
        return errorResponse(500, `store: ${(e as Error).message}`);
      }
      if (!p && !PACKET_VERIFIER.isValidKey(key)) return errorResponse(400, `invalid key: ${seg.slice(0, 64)}`);
      svc.metrics.pkarrGet.inc({ outcome: p ? "found" : "not_found" });
      if (!p) return errorResponse(404, null);
      return new Response(p.bytes.slice(32), {
        status: 200,
        headers: { ...CORS, "content-type": "application/x-pkarr-signed-packet" },
      });
    }
    if (svc.rateLimitMode !== "disabled") {
      const wait = svc.limiter.take(clientKey(svc.rateLimitMode, req.headers, info.remote), svc.now());
      if (wait > 0) {
        await req.body?.cancel().catch(() => {});
        svc.metrics.pkarrPublish.inc({ outcome: "rate_limited" });
        const secs = Math.ceil(wait / 1000);
        return new Response(`Too Many Requests! Wait for ${secs}s`, {
          status: 429,
          headers: { ...CORS, "retry-after": String(secs), "x-ratelimit-after": String(secs) },
        });
      }
    }
    const body = await readBody(req, PKARR_MAX_BODY);
    if (body === null) {
      svc.metrics.pkarrPublish.inc({ outcome: "invalid" });
      return errorResponse(413, `body larger than ${PKARR_MAX_BODY} bytes`);
    }
    let packet;
    try {
      packet = await parseRelayPayload(key, body, PACKET_VERIFIER);
    } catch (e) {
      if (!(e instanceof PacketError)) throw e;
      svc.metrics.pkarrPublish.inc({ outcome: "invalid" });
      if (e.message === "invalid public key") return errorResponse(400, `invalid key: ${seg.slice(0, 64)}`);
      return errorResponse(400, `invalid body payload: ${e.message}`);
    }
    try {
      const r = await svc.putPacket(packet);
      svc.metrics.pkarrPublish.inc({ outcome: r });
    } catch (e) {
      svc.metrics.pkarrPublish.inc({ outcome: "error" });
      return errorResponse(500, `store: ${(e as Error).message}`);
    }
    return new Response(null, { status: 204, headers: CORS });
  };
}
