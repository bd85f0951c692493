/**
 * @module
 * HTTP routes that other services mount on the relay listener and the edge
 * handler (discovery's `/pkarr/` and `/dns-query`, the mailbox's
 * `/_matrix/`, ACME's `/.well-known/acme-challenge/`). A route is a
 * fetch-style handler with a body limit: the raw listener reads at most
 * `maxBodyBytes` (larger announced bodies get 413 without a byte read), then
 * hands a standard `Request` over. Routes never see relay upgrades.
 */

import type { HttpResponse, RequestHead } from "./http1.ts";

/** Which listener a route is served on. */
export type RouteRole = "relay" | "captive-portal";

/** What a route learns about the connection. */
export interface RouteInfo {
  /** The peer's IP address (no port), as the socket reports it. */
  remote: string;
}

/** A handler for one path prefix. */
export interface HttpRoute {
  /** Path prefix served, e.g. `/pkarr/`; the longest matching prefix wins. */
  prefix: string;
  /** Largest request body read, bytes; a larger `Content-Length` gets 413 unread. */
  maxBodyBytes: number;
  /** Listeners serving it: default only the relay listener; ACME's HTTP-01 also needs the captive portal. */
  roles?: readonly RouteRole[];
  /** Answers one request; a throw becomes a 500 (and a log line). */
  handle(req: Request, info: RouteInfo): Response | Promise<Response>;
}

/** The route for `path` on a listener of `role`, if any. */
export function findRoute(routes: readonly HttpRoute[], path: string, role: RouteRole): HttpRoute | undefined {
  let best: HttpRoute | undefined;
  for (const r of routes) {
    if (!path.startsWith(r.prefix) || !(r.roles ?? ["relay"]).includes(role)) continue;
    if (best === undefined || r.prefix.length > best.prefix.length) best = r;
  }
  return best;
}

/** Builds the `Request` a route sees from a parsed head and its body. */
export function routeRequest(head: RequestHead, body: Uint8Array, scheme: "http" | "https"): Request {
  const headers = new Headers();
  for (const [k, v] of head.headers) {
    try {
      headers.append(k, v);
    } catch {
      // a header value the Fetch API refuses: the route does not need it
    }
  }
  const host = headers.get("host") ?? "localhost";
  const url = `${scheme}://${/^[A-Za-z0-9.:[\]-]+$/.test(host) ? host : "localhost"}${head.path}${
    head.query ? `?${head.query}` : ""
  }`;
  // GET with a body is legal HTTP/1.1 and the Matrix relay API uses it; the Fetch API refuses it, so
  // such a body reaches the route as `x-request-body` bytes only through this side door.
  const bodyAllowed = head.method !== "GET" && head.method !== "HEAD";
  const req = new Request(url, {
    method: head.method,
    headers,
    ...(bodyAllowed && body.length > 0 ? { body: body.slice() } : {}),
  });
  if (!bodyAllowed && body.length > 0) GET_BODIES.set(req, body.slice());
  return req;
}

const GET_BODIES = new WeakMap<Request, Uint8Array>();

/**
 * The body of a request, including the body of a GET (which the Fetch API
 * cannot carry): routes that accept `GET` with a body (Matrix `relay_txn`)
 * read it with this. Reads at most what the listener already bounded.
 */
export async function requestBytes(req: Request): Promise<Uint8Array> {
  const side = GET_BODIES.get(req);
  if (side) return side;
  if (req.body === null) return new Uint8Array(0);
  return new Uint8Array(await req.arrayBuffer());
}

/** Turns a route's `Response` into the raw listener's response. */
export async function routeResponse(res: Response): Promise<HttpResponse> {
  const headers: [string, string][] = [];
  res.headers.forEach((v, k) => {
    if (k !== "content-length" && k !== "connection" && k !== "transfer-encoding") headers.push([k, v]);
  });
  const body = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, headers, body };
}

/** The whole stream if it holds at most `limit` bytes, else null (reading stops at the limit). */
export async function readAtMost(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array<ArrayBuffer> | null> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
