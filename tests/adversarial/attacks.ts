/**
 * @module
 * Attack generators for issue 9 (hostile clients), each reproducing one
 * finding against a real listener over real loopback sockets. Written from
 * the specs (`support/wire.ts`), not from the relay's codecs.
 *
 * Every attack is bounded: a count of connections, a duration and an
 * `AbortSignal`; it stops early when the server disconnects it. Attack
 * connections come from 127.0.0.2+ (`support/sock.ts`) so per-source limits
 * can tell them from the legitimate client on 127.0.0.1. Each returns what
 * the attacker saw (bytes sent, connections the server closed, replies);
 * the tests and the soak judge the service by its own numbers (RSS, fds,
 * metrics, probe latency).
 */

export type { AttackReport, Bounds } from "./attacks/common.ts";
export * from "./attacks/relay.ts";
export * from "./attacks/imap.ts";
export * from "./attacks/http_tls.ts";
