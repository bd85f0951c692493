/**
 * @module
 * The plain HTTP endpoints of the relay port, as a pure function of the
 * request head (spec §1.3): `/`, `/index.html`, `/robots.txt`, `/ping`,
 * `/generate_204`, `/healthz`, 404 otherwise. HEAD is answered wherever GET
 * is (`curl -I /ping` health checks). Shared by the raw listener
 * and the `Deno.serve` edge entry, so both answer byte-for-byte alike.
 */

import { header, type HttpError, type HttpResponse, type RequestHead, WsVersionError } from "./http1.ts";

/** Headers upstream puts on every relay-port response, TLS or not (`TLS_HEADERS`). */
export const SECURITY_HEADERS: readonly [string, string][] = [
  ["Strict-Transport-Security", "max-age=63072000; includeSubDomains"],
  [
    "Content-Security-Policy",
    "default-src 'none'; frame-ancestors 'none'; form-action 'none'; base-uri 'self'; block-all-mixed-content; plugin-types 'none'",
  ],
];

const ROOT_HTML =
  '<html><body>\n<h1>Iroh Relay</h1>\n<p>\n  This is an <a href="https://iroh.computer/">Iroh</a> Relay server.\n</p>\n';

/** Captive-portal challenge header pairs: 0.35 (Tailscale names) and 1.x. */
const CHALLENGES: readonly [string, string][] = [
  ["x-iroh-challenge", "X-Iroh-Response"],
  ["x-tailscale-challenge", "X-Tailscale-Response"],
];

/** A challenge value clients may have echoed: 1–63 bytes of `[A-Za-z0-9._-]`. */
const CHALLENGE_VALUE = /^[A-Za-z0-9._-]{1,63}$/;

/** Answers `/generate_204`, echoing a valid challenge header of either generation. */
export function generate204(head: RequestHead): HttpResponse {
  const headers: [string, string][] = [];
  for (const [req, res] of CHALLENGES) {
    const v = header(head, req);
    if (v !== undefined && CHALLENGE_VALUE.test(v)) headers.push([res, `response ${v}`]);
  }
  return { status: 204, headers };
}

/**
 * What `/healthz` reports. The public relay port shows only `status` and
 * `version`; the rest (git revision, service states: IMAP mode, login mode,
 * bind addresses, session counts) only on the metrics port's `/healthz`,
 * since they help an attacker more than a client.
 */
export interface HealthInfo {
  /** Our version string. */
  version: string;
  /** Git revision, or "unknown" (metrics port only). */
  gitHash: string;
  /** Extra service states merged into the detailed JSON (metrics port only). */
  services?: () => Record<string, unknown>;
  /** False while the service cannot serve (answered as 503 `unhealthy`); default healthy. */
  healthy?: () => boolean;
}

/** The public `/healthz`: `{"status":"ok"|"unhealthy","version":…}`, 200 or 503. */
export function publicHealth(health: HealthInfo): HttpResponse {
  const ok = health.healthy?.() ?? true;
  return {
    status: ok ? 200 : 503,
    headers: [["Content-Type", "application/json"]],
    body: JSON.stringify({ status: ok ? "ok" : "unhealthy", version: health.version }),
  };
}

/** The metrics port's `/healthz`: status, version, git revision and every service's state. */
export function detailedHealth(health: HealthInfo, extra: Record<string, unknown> = {}): HttpResponse {
  const ok = health.healthy?.() ?? true;
  return {
    status: ok ? 200 : 503,
    headers: [["Content-Type", "application/json"]],
    body: JSON.stringify({
      status: ok ? "ok" : "unhealthy",
      version: health.version,
      git_hash: health.gitHash,
      ...extra,
      ...health.services?.(),
    }),
  };
}

/**
 * Answers a non-upgrade request on the relay port.
 *
 * @param head the parsed request
 * @param health what `/healthz` reports
 */
export function relayEndpoint(head: RequestHead, health: HealthInfo): HttpResponse {
  const res = route(head, health);
  res.headers.push(...SECURITY_HEADERS);
  return res;
}

/** GET, or HEAD, which is answered like GET without the body (the transport leaves it out). */
function isGetOrHead(head: RequestHead): boolean {
  return head.method === "GET" || head.method === "HEAD";
}

function route(head: RequestHead, health: HealthInfo): HttpResponse {
  if (!isGetOrHead(head)) return notFound();
  switch (head.path) {
    case "/":
    case "/index.html":
      return { status: 200, headers: [["Content-Type", "text/html; charset=utf-8"]], body: ROOT_HTML };
    case "/robots.txt":
      return { status: 200, headers: [], body: "User-agent: *\nDisallow: /\n" };
    case "/ping":
      return { status: 200, headers: [["Access-Control-Allow-Origin", "*"]] };
    case "/generate_204":
      return generate204(head);
    case "/healthz":
      return publicHealth(health);
    default:
      return notFound();
  }
}

/**
 * Answers a request on the plain-HTTP port while TLS serves the relay: only
 * `GET /generate_204`, no security headers (upstream's captive-portal service).
 */
export function captivePortalEndpoint(head: RequestHead): HttpResponse {
  if (isGetOrHead(head) && head.path === "/generate_204") return generate204(head);
  return notFound();
}

/** The 404 every unknown route gets. */
export function notFound(): HttpResponse {
  return { status: 404, headers: [["Content-Type", "text/plain; charset=utf-8"]], body: "Not Found" };
}

/**
 * The answer to a request refused with `e` (bad head, refused upgrade):
 * plain text, `Sec-WebSocket-Version: 13` for a wrong WebSocket version, and
 * the relay port's {@link SECURITY_HEADERS} when `relayPort`.
 */
export function httpErrorResponse(e: HttpError, relayPort: boolean): HttpResponse {
  const headers: [string, string][] = [["Content-Type", "text/plain; charset=utf-8"]];
  if (e instanceof WsVersionError) headers.push(["Sec-WebSocket-Version", "13"]);
  if (relayPort) headers.push(...SECURITY_HEADERS);
  return { status: e.status, headers, body: e.message };
}
