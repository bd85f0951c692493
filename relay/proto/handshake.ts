/**
 * @module
 * The authentication step of each generation, as pure functions: bytes in,
 * verdict out. Signature checking is passed in, so tests can count calls and
 * the transports never see key material.
 *
 * - 0.35: the first frame is `ClientInfo` = magic, key, signature over the
 *   postcard-encoded `{version}`. No challenge: it only proves someone once
 *   signed `03` with that key (spec §3.1).
 * - 1.x: the server sends 16 random bytes; the client signs
 *   `BLAKE3.derive_key("iroh-relay handshake v1 challenge signature", challenge)`
 *   (spec §3.2). A header-carried fast path needs a TLS exporter, which Deno
 *   lacks, so here it is only parsed (malformed → refuse) and then ignored.
 *
 * Port of `protos/relay.rs @v0.35.0` (`recv_client_key`) and
 * `protos/handshake.rs @v1.0.3`.
 */

import { blake3 } from "@noble/hashes/blake3";
import type { DerpMsg } from "./codec_derp.ts";
import { CHALLENGE_LEN, type V1Msg } from "./codec_v1.ts";
import { KEY_LEN } from "./frame_type.ts";

/** The only ClientInfo protocol version 0.35 accepts (`PROTOCOL_VERSION`). */
export const DERP_PROTOCOL_VERSION = 3;

/** Time a 0.35 client has to send ClientInfo after the 101, in ms. */
export const CLIENT_INFO_TIMEOUT_MS = 10_000;

/** BLAKE3 `derive_key` context of the 1.x challenge signature. */
export const CHALLENGE_CONTEXT = "iroh-relay handshake v1 challenge signature";

/** Request header of the 1.x TLS-exporter fast path. */
export const CLIENT_AUTH_HEADER = "x-iroh-relay-client-auth-v1";

/** Strict Ed25519 verification, injected. */
export type VerifyFn = (publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array) => Promise<boolean>;

const contextBytes = new TextEncoder().encode(CHALLENGE_CONTEXT);

/** The 32 bytes a 1.x client signs for `challenge`. */
export function challengeMessage(challenge: Uint8Array): Uint8Array {
  return blake3(challenge, { context: contextBytes });
}

/** A fresh 1.x ServerChallenge from `random` (CSPRNG, injected for tests). */
export function newChallenge(random: (n: number) => Uint8Array): V1Msg {
  return { type: "ServerChallenge", challenge: random(CHALLENGE_LEN) };
}

/** Outcome of checking the first frame of a connection. */
export type AuthResult =
  | { ok: true; key: Uint8Array }
  | { ok: false; reply: "close" | "deny"; reason: string };

/**
 * Checks a 0.35 ClientInfo: strict signature over the message bytes, then the
 * postcard `{version}`. Access control sits between the two upstream; this
 * returns the version so the caller can keep that order.
 */
export async function verifyClientInfo(
  msg: DerpMsg,
  verify: VerifyFn,
): Promise<AuthResult & { version?: number }> {
  if (msg.type !== "ClientInfo") {
    return { ok: false, reply: "close", reason: `expected ClientInfo as first frame, got ${msg.type}` };
  }
  if (!await verify(msg.key, msg.signature, msg.message)) {
    return { ok: false, reply: "close", reason: "ClientInfo signature invalid" };
  }
  const version = readPostcardVarint(msg.message);
  if (version === null) return { ok: false, reply: "close", reason: "ClientInfo message is not postcard" };
  return { ok: true, key: msg.key.slice(), version };
}

/**
 * Checks a 1.x ClientAuth against the challenge this server sent. A bad
 * signature is answered `ServerDeniesAuth("signature invalid")`, as upstream.
 */
export async function verifyClientAuth(
  msg: V1Msg,
  challenge: Uint8Array,
  verify: VerifyFn,
): Promise<AuthResult> {
  if (msg.type !== "ClientAuth") {
    return { ok: false, reply: "close", reason: `expected ClientAuth, got ${msg.type}` };
  }
  if (!await verify(msg.publicKey, msg.signature, challengeMessage(challenge))) {
    return { ok: false, reply: "deny", reason: "signature invalid" };
  }
  return { ok: true, key: msg.publicKey.slice() };
}

/** Length of the decoded fast-path header: key, 0x40, signature, suffix. */
const CLIENT_AUTH_HEADER_LEN = KEY_LEN + 1 + 64 + 16;

/**
 * Parses the `x-iroh-relay-client-auth-v1` header value (base64url, no
 * padding, postcard `{public_key, signature, key_material_suffix}`).
 *
 * @throws {SyntaxError} not base64url or not that layout (upstream drops the connection)
 */
export function parseClientAuthHeader(
  value: string,
): { publicKey: Uint8Array; signature: Uint8Array; suffix: Uint8Array } {
  if (!/^[A-Za-z0-9_-]*$/.test(value)) throw new SyntaxError(`Invalid ${CLIENT_AUTH_HEADER}: not base64url`);
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(value, { alphabet: "base64url", lastChunkHandling: "loose" });
  } catch {
    throw new SyntaxError(`Invalid ${CLIENT_AUTH_HEADER}: not base64url`);
  }
  if (bytes.length !== CLIENT_AUTH_HEADER_LEN || bytes[KEY_LEN] !== 64) {
    throw new SyntaxError(`Invalid ${CLIENT_AUTH_HEADER}: expected ${CLIENT_AUTH_HEADER_LEN} bytes of postcard`);
  }
  return {
    publicKey: bytes.subarray(0, KEY_LEN),
    signature: bytes.subarray(KEY_LEN + 1, KEY_LEN + 65),
    suffix: bytes.subarray(KEY_LEN + 65),
  };
}

/** Reads a postcard (LEB128) unsigned varint at the start of `b`; trailing bytes are ignored, as upstream. */
export function readPostcardVarint(b: Uint8Array): number | null {
  let n = 0;
  let mul = 1;
  for (let i = 0; i < b.length && i < 10; i++) {
    n += (b[i]! & 0x7f) * mul;
    if ((b[i]! & 0x80) === 0) return n;
    mul *= 128;
  }
  return null;
}
