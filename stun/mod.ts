/**
 * @module
 * STUN (RFC 5389 Binding, plus the RFC 3489 form) as the iroh 0.35 relay
 * serves it on UDP 3478, so Delta Chat cores learn their public address
 * from their home relay and can connect directly. Spec: iroh-relay-protocol
 * §5 "STUN".
 *
 * @example
 * ```ts
 * import { encodeBindingRequest, parseBindingSuccess, startStunServer } from "./mod.ts";
 * const server = startStunServer({ hostname: "127.0.0.1", port: 0 });
 * const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * await client.send(encodeBindingRequest(new Uint8Array(12)), server.addr);
 * const [reply] = await client.receive();
 * client.close();
 * await server.close();
 * if (parseBindingSuccess(reply)?.port !== (client.addr as Deno.NetAddr).port) throw new Error("wrong address");
 * ```
 */

export {
  type BindingRequest,
  encodeBindingRequest,
  encodeBindingSuccess,
  MAGIC_COOKIE,
  parseBindingRequest,
  parseBindingSuccess,
  type SourceAddr,
  type StunDrop,
} from "./codec.ts";
export { StunMetrics } from "./metrics.ts";
export { DEFAULT_STUN_RATE_LIMIT, StunRateLimit, type StunRateLimitOptions } from "./rate_limit.ts";
export { startStunServer, type StunServer, type StunServerOptions } from "./server.ts";
