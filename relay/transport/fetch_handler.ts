/**
 * @module
 * The relay as a `fetch(Request) → Response` handler, for `Deno.serve` and
 * `deno serve` (edge platforms): same endpoints as the raw listener
 * (`endpoints.ts`), and `/relay` over `Deno.upgradeWebSocket` for iroh 1.x
 * and 0.35 WebSocket clients. The 0.35 `Upgrade: iroh derp http` cannot be
 * answered through this API and gets a 400 that says so.
 */

import { type HealthInfo, relayEndpoint, SECURITY_HEADERS } from "./endpoints.ts";
import { DERP, V1, V2 } from "../proto/generation.ts";
import {
  checkClientAuthHeader,
  classifyUpgrade,
  HttpError,
  type HttpResponse,
  isRelayPath,
  presentedToken,
  type RequestHead,
  WsVersionError,
} from "./http1.ts";
import type { RelayCore } from "../server/relay_core.ts";
import { findRoute, type HttpRoute, readAtMost } from "./routes.ts";
import { type RuntimeWebSocket, serveWebSocket } from "./ws.ts";

/** Turns a `Request` into the head the pure endpoint code reads. */
export function requestHead(req: Request): RequestHead {
  const url = new URL(req.url);
  const headers: [string, string][] = [];
  req.headers.forEach((v, k) => headers.push([k.toLowerCase(), v]));
  return { method: req.method, path: url.pathname, query: url.search.slice(1), version: "HTTP/1.1", headers };
}

function toResponse(res: HttpResponse): Response {
  const body = res.status === 204 ? null : (res.body as BodyInit | undefined) ?? null;
  return new Response(body, { status: res.status, headers: res.headers });
}

/** Options of {@link createFetchHandler}. */
export interface FetchHandlerOptions {
  /** What `/healthz` reports. */
  health: HealthInfo;
  /** Other services' HTTP routes (discovery, mailbox), served before the relay's own endpoints. */
  routes?: readonly HttpRoute[];
  /** Upgrades a request (default `Deno.upgradeWebSocket`; tests may fake it). */
  upgrade?: (req: Request, protocol: string | undefined) => { socket: RuntimeWebSocket; response: Response };
}

/**
 * Builds the handler.
 *
 * @example
 * ```ts
 * import { RelayCore } from "../server/relay_core.ts";
 * import { createFetchHandler } from "./fetch_handler.ts";
 * const core = new RelayCore();
 * const handle = createFetchHandler(core, { health: { version: "x", gitHash: "y" } });
 * const res = handle(new Request("http://relay.example/ping"));
 * core.close();
 * if (res.status !== 200) throw new Error("ping failed");
 * ```
 */
export function createFetchHandler(
  core: RelayCore,
  opts: FetchHandlerOptions,
): (req: Request, info?: { remoteAddr?: Deno.Addr }) => Response | Promise<Response> {
  const upgrade = opts.upgrade ??
    ((req: Request, protocol: string | undefined) =>
      Deno.upgradeWebSocket(req, {
        ...(protocol ? { protocol } : {}),
        // The relay core pings on its own schedule (spec §4 "Liveness").
        idleTimeout: 0,
      }));
  const routes = opts.routes ?? [];
  return (req, info) => {
    const head = requestHead(req);
    const route = routes.length > 0 ? findRoute(routes, head.path, "relay") : undefined;
    if (route) return answerRoute(route, req, info?.remoteAddr, core);
    if (!(isRelayPath(head.path) && head.method === "GET")) return toResponse(relayEndpoint(head, opts.health));
    const acceptedAt = core.now();
    // Read before upgrading: the request object is closed afterwards.
    const addr = info?.remoteAddr;
    try {
      const up = classifyUpgrade(head);
      if (up.kind === "derp") {
        throw new HttpError(
          400,
          'This relay deployment serves WebSocket clients only: the iroh 0.35 "iroh derp http" upgrade needs the self-hosted listener',
        );
      }
      if (up.generation === "1.x") checkClientAuthHeader(head);
      const gen = up.generation === "0.35" ? DERP : up.version === 2 ? V2 : V1;
      const { socket, response } = upgrade(req, gen.subprotocol || undefined);
      const token = presentedToken(head);
      serveWebSocket(core, socket, {
        gen,
        acceptedAt,
        remote: addr && addr.transport === "tcp" ? `${addr.hostname}:${addr.port}` : "?",
        ...(token !== undefined ? { token } : {}),
      });
      for (const [k, v] of SECURITY_HEADERS) response.headers.set(k, v);
      return response;
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      const headers: [string, string][] = [["Content-Type", "text/plain; charset=utf-8"], ...SECURITY_HEADERS];
      if (e instanceof WsVersionError) headers.push(["Sec-WebSocket-Version", "13"]);
      return toResponse({ status: e.status, headers, body: e.message });
    }
  };
}

/** Runs a route with its body limit; failures become a 500 and a log line. */
async function answerRoute(
  route: HttpRoute,
  req: Request,
  addr: Deno.Addr | undefined,
  core: RelayCore,
): Promise<Response> {
  const text = (status: number, body: string) =>
    new Response(body, { status, headers: { "Content-Type": "text/plain; charset=utf-8" } });
  const announced = Number(req.headers.get("content-length") ?? "0");
  if (!(announced <= route.maxBodyBytes)) return text(413, "Request body too large");
  try {
    let bounded = req;
    if (req.body !== null && req.method !== "GET" && req.method !== "HEAD") {
      // The platform may stream a body without Content-Length: read at most the limit.
      const body = await readAtMost(req.body, route.maxBodyBytes);
      if (body === null) return text(413, "Request body too large");
      bounded = new Request(req.url, { method: req.method, headers: req.headers, body });
    }
    return await route.handle(bounded, { remote: addr && addr.transport === "tcp" ? addr.hostname : "?" });
  } catch (e) {
    // A request can make a handler fail as often as it is sent: limited.
    core.peerLog.line("error", "route failed", `${route.prefix} handler failed: ${(e as Error).message}`);
    return text(500, "Internal error");
  }
}
