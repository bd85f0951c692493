/**
 * @module
 * The server side of a client's handshake, for both kinds the
 * {@link Generation} names (`handshake`):
 * - `challenge` (1.x): send ServerChallenge, read ClientAuth, verify, ask
 *   access, send ServerConfirmsAuth (or ServerDeniesAuth and close).
 * - `client-info` (0.35): read ClientInfo, verify, ask access (deny → Health
 *   "not authenticated" and close), check version 3. Nothing is sent on
 *   success.
 *
 * The pure steps (decoding, signature messages) are in `proto/handshake.ts`;
 * this file adds the access check, the replies and the metrics. Registering
 * the authenticated key is the caller's ({@link Client}).
 */

import type { Client } from "./client.ts";
import type { DerpMsg } from "../proto/codec_derp.ts";
import type { V1Msg } from "../proto/codec_v1.ts";
import type { Generation, WireMsg } from "../proto/generation.ts";
import { DERP_PROTOCOL_VERSION, newChallenge, verifyClientAuth, verifyClientInfo } from "../proto/handshake.ts";
import type { RelayCore } from "./relay_core.ts";

/**
 * The server's opening message, if its generation's handshake has one: a
 * fresh ServerChallenge for `challenge`, null for `client-info` (the client
 * speaks first).
 */
export function openingChallenge(core: RelayCore, gen: Generation): (V1Msg & { type: "ServerChallenge" }) | null {
  if (gen.handshake !== "challenge") return null;
  return newChallenge(core.random) as V1Msg & { type: "ServerChallenge" };
}

/**
 * Runs the client's first frame through its generation's handshake.
 * @param challenge the challenge sent by {@link openingChallenge} (`challenge` handshakes)
 * @returns the authenticated key, or null when the connection was refused,
 *   closed, or closed meanwhile (deadline, shutdown)
 */
export async function authenticate(
  core: RelayCore,
  client: Client,
  challenge: Uint8Array | null,
  type: number,
  payload: Uint8Array,
): Promise<Uint8Array | null> {
  const gen = client.gen;
  let msg: WireMsg;
  try {
    msg = gen.decodeAuth(type, payload);
  } catch (e) {
    core.metrics.c.authFailures++;
    client.close(`handshake: ${(e as Error).message}`);
    return null;
  }
  if (gen.handshake === "client-info") {
    const r = await verifyClientInfo(msg as DerpMsg, core.verify);
    if (client.closed) return null;
    if (!r.ok) {
      core.metrics.c.authFailures++;
      client.close(`handshake: ${r.reason}`);
      return null;
    }
    const allowed = await core.allows(r.key, client.info.token);
    // The establish deadline (or a shutdown) may have closed us while the hook was asked.
    if (client.closed) return null;
    if (!allowed) {
      core.metrics.c.authFailures++;
      client.refuse({ type: "Health", problem: "not authenticated" }, "access denied");
      return null;
    }
    if (r.version !== DERP_PROTOCOL_VERSION) {
      core.metrics.c.authFailures++;
      client.close(`handshake: unsupported ClientInfo version ${r.version}`);
      return null;
    }
    return r.key;
  }
  const r = await verifyClientAuth(msg as V1Msg, challenge!, core.verify);
  if (client.closed) return null;
  if (!r.ok) {
    core.metrics.c.authFailures++;
    // A key that is not a curve point is a decode error upstream: no reply.
    if (r.reply === "deny" && core.isCurvePoint((msg as V1Msg & { type: "ClientAuth" }).publicKey)) {
      client.refuse({ type: "ServerDeniesAuth", reason: r.reason }, `handshake: ${r.reason}`);
    } else {
      client.close(`handshake: ${r.reason}`);
    }
    return null;
  }
  if (!await core.allows(r.key, client.info.token)) {
    if (client.closed) return null;
    core.metrics.c.authFailures++;
    client.refuse({ type: "ServerDeniesAuth", reason: "not authorized" }, "access denied");
    return null;
  }
  if (client.closed) return null;
  client.writer.enqueueMsg({ type: "ServerConfirmsAuth" });
  return r.key;
}
