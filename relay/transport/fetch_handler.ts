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
): (req: Request, info?: { remoteAddr?: Deno.Addr }) => Response {
  const upgrade = opts.upgrade ??
    ((req: Request, protocol: string | undefined) =>
      Deno.upgradeWebSocket(req, {
        ...(protocol ? { protocol } : {}),
        // The relay core pings on its own schedule (spec §4 "Liveness").
        idleTimeout: 0,
      }));
  return (req, info) => {
    const head = requestHead(req);
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
