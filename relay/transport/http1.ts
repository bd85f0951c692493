/**
 * @module
 * Just enough HTTP/1.1 for the relay listener: parse one request head from
 * bytes, classify a `/relay` upgrade by generation, and serialize responses.
 * Pure: no sockets.
 *
 * Why hand-written: `Deno.serve` cannot answer the 0.35 `Upgrade: iroh derp
 * http` (not WebSocket) with a 101 and give back the socket (spec §0), so the
 * relay port runs on a raw listener and needs its own request-head parser.
 * Bodies are not supported beyond a small `Content-Length` to skip: no relay
 * endpoint takes one.
 */

import { CLIENT_AUTH_HEADER, parseClientAuthHeader } from "../proto/handshake.ts";

/** Largest request head accepted, in bytes (431 beyond this). */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Most header lines accepted. */
export const MAX_HEADERS = 100;

/** A parsed request line and headers. */
export interface RequestHead {
  /** Method, as sent (case-sensitive per RFC 9110). */
  method: string;
  /** Path without the query string. */
  path: string;
  /** Raw query string without `?`, or "". */
  query: string;
  /** `HTTP/1.1` or `HTTP/1.0`. */
  version: string;
  /** Header lines in order, names lowercased, values trimmed. */
  headers: [string, string][];
}

/** A request the parser refuses; the listener answers `status` and closes. */
export class HttpError extends Error {
  /** Status code to answer with. */
  readonly status: number;
  /** @param status HTTP status; @param message body text */
  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpError";
    this.status = status;
  }
}

/** First value of header `name` (lowercase), or undefined. */
export function header(head: RequestHead, name: string): string | undefined {
  for (const [k, v] of head.headers) if (k === name) return v;
  return undefined;
}

const latin1 = new TextDecoder("latin1");
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Finds and parses a request head at the start of `buf`.
 *
 * @returns the head and the number of bytes it took, or null if the blank
 *   line has not arrived yet
 * @throws {HttpError} malformed request (400), head too large (431),
 *   unsupported version (505)
 */
export function parseRequestHead(buf: Uint8Array): { head: RequestHead; length: number } | null {
  let end = -1;
  let bodyStart = -1;
  const limit = Math.min(buf.length, MAX_HEAD_BYTES + 4);
  for (let i = 0; i < limit; i++) {
    if (buf[i] !== 0x0a) continue;
    // A blank line: "\n\n" or "\n\r\n" (lenient about bare LF, as hyper is).
    if (buf[i + 1] === 0x0a) {
      end = i;
      bodyStart = i + 2;
      break;
    }
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) {
      end = i;
      bodyStart = i + 3;
      break;
    }
  }
  if (end < 0) {
    if (buf.length > MAX_HEAD_BYTES) throw new HttpError(431, "Request header fields too large");
    return null;
  }
  const text = latin1.decode(buf.subarray(0, end));
  const lines = text.split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  const requestLine = lines[0] ?? "";
  const parts = requestLine.split(" ");
  if (parts.length !== 3) throw new HttpError(400, "Malformed request line");
  const [method, target, version] = parts as [string, string, string];
  if (!TOKEN.test(method)) throw new HttpError(400, "Malformed method");
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    throw new HttpError(version.startsWith("HTTP/") ? 505 : 400, "Unsupported HTTP version");
  }
  // deno-lint-ignore no-control-regex -- control characters are exactly what is refused here
  if (target.length === 0 || /[\x00-\x20\x7f]/.test(target)) throw new HttpError(400, "Malformed request target");
  let pathAndQuery = target;
  if (!target.startsWith("/")) {
    // absolute-form (proxies): keep only path and query
    const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*(.*)$/.exec(target);
    if (!m) throw new HttpError(400, "Malformed request target");
    // "http://host?q" has an empty path, which means "/" (RFC 9112 §3.2.2).
    pathAndQuery = m[1]!.startsWith("/") ? m[1]! : `/${m[1]}`;
  }
  const q = pathAndQuery.indexOf("?");
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q < 0 ? "" : pathAndQuery.slice(q + 1);
  const headers: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith(" ") || line.startsWith("\t")) throw new HttpError(400, "Obsolete header folding");
    const colon = line.indexOf(":");
    if (colon <= 0) throw new HttpError(400, "Malformed header line");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new HttpError(400, "Malformed header name");
    headers.push([name.toLowerCase(), line.slice(colon + 1).trim()]);
    if (headers.length > MAX_HEADERS) throw new HttpError(431, "Too many header fields");
  }
  return { head: { method, path, query, version, headers }, length: bodyStart };
}

/** Whether the client asked to close after this response. */
export function wantsClose(head: RequestHead): boolean {
  const c = (header(head, "connection") ?? "").toLowerCase();
  if (head.version === "HTTP/1.0") return !/\bkeep-alive\b/.test(c);
  return /\bclose\b/.test(c);
}

/**
 * Body length announced by the request: 0 if none. Refuses what two parsers
 * could read differently (request smuggling behind a proxy): a repeated
 * `Content-Length` (even with equal values) or one together with
 * `Transfer-Encoding` is a 400; `Transfer-Encoding` alone a 501 (we take no
 * chunked bodies). The listener answers and closes in every case.
 * @throws {HttpError}
 */
export function requestBodyLength(head: RequestHead): number {
  let cl: string | undefined;
  let te = false;
  for (const [k, v] of head.headers) {
    if (k === "transfer-encoding") te = true;
    else if (k === "content-length") {
      if (cl !== undefined) throw new HttpError(400, "Repeated Content-Length");
      cl = v;
    }
  }
  if (te && cl !== undefined) throw new HttpError(400, "Transfer-Encoding together with Content-Length");
  if (te) throw new HttpError(501, "Request bodies are not supported");
  if (cl === undefined) return 0;
  if (!/^\d{1,9}$/.test(cl)) throw new HttpError(400, "Malformed Content-Length");
  return Number(cl);
}

/** The three kinds of `/relay` clients (spec §0). */
export type RelayUpgrade =
  | { kind: "derp" }
  | { kind: "ws"; generation: "0.35"; wsKey: string }
  | { kind: "ws"; generation: "1.x"; version: 1 | 2; wsKey: string };

/** Subprotocols a 1.x client may offer, best first. */
export const SUBPROTOCOLS = ["iroh-relay-v2", "iroh-relay-v1"] as const;

/** The exact Upgrade token of the 0.35 custom upgrade (case-sensitive, as upstream). */
export const DERP_UPGRADE = "iroh derp http";

/** True for the paths that carry relay connections. */
export function isRelayPath(path: string): boolean {
  return path === "/relay" || path === "/derp";
}

/**
 * Decides which generation a `GET /relay` request belongs to (spec §0).
 *
 * @throws {HttpError} 400 with the reason when it is none of them; a wrong
 *   `Sec-WebSocket-Version` carries `Sec-WebSocket-Version: 13` back
 */
export function classifyUpgrade(head: RequestHead): RelayUpgrade {
  const upgrade = header(head, "upgrade");
  if (upgrade === DERP_UPGRADE) return { kind: "derp" };
  if (upgrade === undefined || upgrade.toLowerCase() !== "websocket") {
    throw new HttpError(400, `Unsupported Upgrade header: expected "websocket" or "${DERP_UPGRADE}"`);
  }
  const wsKey = header(head, "sec-websocket-key");
  if (!wsKey) throw new HttpError(400, "Missing Sec-WebSocket-Key header");
  const wsVersion = header(head, "sec-websocket-version");
  if (wsVersion !== "13") throw new WsVersionError();
  const offered = header(head, "sec-websocket-protocol");
  if (offered === undefined) return { kind: "ws", generation: "0.35", wsKey };
  const list = offered.split(",").map((s) => s.trim());
  for (const proto of SUBPROTOCOLS) {
    if (list.includes(proto)) {
      return { kind: "ws", generation: "1.x", version: proto === "iroh-relay-v2" ? 2 : 1, wsKey };
    }
  }
  throw new HttpError(
    400,
    `Unsupported relay protocol: we support ${SUBPROTOCOLS.join(", ")} but you only provide ${offered}`,
  );
}

/** 400 for a missing or wrong `Sec-WebSocket-Version`, answered with `Sec-WebSocket-Version: 13`. */
export class WsVersionError extends HttpError {
  constructor() {
    super(400, "Sec-WebSocket-Version must be 13");
    this.name = "WsVersionError";
  }
}

/**
 * Token a 1.x client presents for `shared_token` access: the first
 * `Authorization: Bearer` header (scheme case-insensitive), else `?token=`.
 */
export function presentedToken(head: RequestHead): string | undefined {
  const auth = header(head, "authorization");
  if (auth !== undefined) {
    const m = /^bearer\s+(.+)$/i.exec(auth);
    if (m) return m[1]!.trim();
  }
  const t = new URLSearchParams(head.query).get("token");
  return t ?? undefined;
}

/**
 * Validates the optional 1.x fast-path header. Deno exposes no TLS exporter,
 * so the value is never used, but a malformed one is refused as upstream does.
 * @throws {HttpError} 400 if present and malformed
 */
export function checkClientAuthHeader(head: RequestHead): void {
  const v = header(head, CLIENT_AUTH_HEADER);
  if (v === undefined) return;
  try {
    parseClientAuthHeader(v);
  } catch (e) {
    throw new HttpError(400, (e as Error).message);
  }
}

/** A response to serialize. */
export interface HttpResponse {
  /** Status code. */
  status: number;
  /** Header pairs (Content-Length is added by {@link serializeResponse}). */
  headers: [string, string][];
  /** Body bytes or text. */
  body?: Uint8Array | string;
}

const REASONS: Record<number, string> = {
  101: "Switching Protocols",
  200: "OK",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

const utf8 = new TextEncoder();

/**
 * Serializes a response. Non-101 responses always carry `Content-Length`, so
 * a keep-alive client knows where the next response starts. `headOnly` (the
 * answer to a HEAD request) keeps the length of the body but leaves it out
 * (RFC 9110 §9.3.2).
 */
export function serializeResponse(
  res: HttpResponse,
  opts: { close?: boolean; headOnly?: boolean } = {},
): Uint8Array {
  const body = typeof res.body === "string" ? utf8.encode(res.body) : res.body ?? new Uint8Array(0);
  let head = `HTTP/1.1 ${res.status} ${REASONS[res.status] ?? "Unknown"}\r\n`;
  for (const [k, v] of res.headers) head += `${k}: ${v}\r\n`;
  if (res.status !== 101 && res.status !== 204) head += `Content-Length: ${body.length}\r\n`;
  if (opts.close && res.status !== 101) head += "Connection: close\r\n";
  head += "\r\n";
  const h = utf8.encode(head);
  if (body.length === 0 || opts.headOnly) return h;
  const out = new Uint8Array(h.length + body.length);
  out.set(h);
  out.set(body, h.length);
  return out;
}
