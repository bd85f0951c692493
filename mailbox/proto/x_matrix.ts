/**
 * @module
 * X-Matrix request authentication (Matrix server-server API, "Request
 * Authentication"; Dendrite's `fclient.VerifyHTTPRequest`,
 * gomatrixserverlib `fclient/request.go @2c764912ce93`) for P2P servers,
 * whose verify key is their name.
 *
 * - Header: `Authorization: X-Matrix origin="…",key="ed25519:…",sig="…",destination="…"`;
 *   several may be sent, other schemes are ignored.
 * - Signed bytes: canonical JSON of `{content?, destination, method, origin, uri}`,
 *   `content` only when the body is non-empty.
 * - Checks in Dendrite's order, with its messages: header syntax (400),
 *   destination one of ours (400), an origin at all (401), origin grammar
 *   (400), then the signatures (401).
 *
 * Differences from Dendrite, all stricter: every `ed25519:*` signature sent
 * must verify (all key ids of a P2P server name the same key) and at least
 * one must be present; a header without `destination` is checked against
 * each of our names rather than against `""`; an origin that is not a P2P
 * name is refused with 401 (Dendrite would fail to fetch its keys: 500).
 *
 * Pure: the Ed25519 check is injected.
 */

import { canonicalJson, type JsonValue } from "./canonical_json.ts";
import { decodeBase64 } from "./base64.ts";
import { isServerName, p2pKeyOf } from "./identifiers.ts";

/** One parsed `X-Matrix` header. */
export interface XMatrixHeader {
  /** Sending server. */
  origin: string;
  /** Server the request was signed for, if named. */
  destination?: string;
  /** Key id, e.g. `ed25519:dendrite-demo-yggdrasil`. */
  key: string;
  /** Unpadded Base64 signature. */
  sig: string;
}

/** Most `Authorization` headers looked at: each costs a signature check. */
export const MAX_AUTH_HEADERS = 4;

/**
 * Parses one `Authorization` header value. `null` for another scheme;
 * `"invalid"` for an X-Matrix header without origin, key or sig.
 * Values may be quoted (`\` escapes honoured) or bare tokens.
 */
export function parseXMatrix(value: string): XMatrixHeader | null | "invalid" {
  const space = value.indexOf(" ");
  const scheme = space < 0 ? value : value.slice(0, space);
  if (scheme.toLowerCase() !== "x-matrix") return null;
  if (space < 0) return "invalid";
  const params = new Map<string, string>();
  for (const part of value.slice(space + 1).split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim().toLowerCase();
    let v = part.slice(eq + 1).trim();
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, "$1");
    params.set(name, v);
  }
  const origin = params.get("origin");
  const key = params.get("key");
  const sig = params.get("sig");
  if (!origin || !key || !sig) return "invalid";
  const destination = params.get("destination");
  return { origin, key, sig, ...(destination ? { destination } : {}) };
}

/** What a request is signed over, besides origin and destination. */
export interface RequestToVerify {
  /** HTTP method, upper case. */
  method: string;
  /** Path and query exactly as requested. */
  uri: string;
  /** Parsed JSON body; absent for an empty body. */
  content?: JsonValue;
}

/** Ed25519 check: true if `signature` is valid for `message` under `publicKey`. */
export type VerifyEd25519 = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => Promise<boolean>;

/** Result of {@link authenticate}: the origin, or a refusal with Dendrite's status and message. */
export type AuthResult = { ok: true; origin: string } | { ok: false; status: 400 | 401; message: string };

/** Options of {@link authenticate}. */
export interface AuthOptions {
  /** Our server names, as accepted in `destination`; an empty list accepts any. */
  serverNames: readonly string[];
  /** The signature check. */
  verify: VerifyEd25519;
}

/** The canonical bytes an X-Matrix signature covers. */
export function signedBytes(req: RequestToVerify, origin: string, destination: string): Uint8Array {
  return new TextEncoder().encode(canonicalJson({
    ...(req.content !== undefined ? { content: req.content } : {}),
    destination,
    method: req.method,
    origin,
    uri: req.uri,
  }));
}

/**
 * Authenticates a request from its `Authorization` header values.
 * @param authorization every `Authorization` header value, in order
 */
export async function authenticate(
  authorization: readonly string[],
  req: RequestToVerify,
  opts: AuthOptions,
): Promise<AuthResult> {
  const headers: XMatrixHeader[] = [];
  for (const value of authorization) {
    const h = parseXMatrix(value);
    if (h === null) continue;
    if (h === "invalid") return { ok: false, status: 400, message: "Bad Request" };
    if (headers.length > 0 && headers[0]!.origin !== h.origin) {
      return { ok: false, status: 400, message: "Bad Request" };
    }
    if (headers.length >= MAX_AUTH_HEADERS) {
      return { ok: false, status: 400, message: `Bad Request: more than ${MAX_AUTH_HEADERS} X-Matrix headers` };
    }
    headers.push(h);
  }
  const ours = (d: string) => opts.serverNames.length === 0 || opts.serverNames.includes(d);
  for (const h of headers) {
    if (h.destination !== undefined && !ours(h.destination)) {
      return {
        ok: false,
        status: 400,
        message: `Unrecognised server name ${JSON.stringify(h.destination)} for Destination`,
      };
    }
  }
  if (headers.length === 0) {
    return { ok: false, status: 401, message: 'Missing "Authorization: X-Matrix ..." HTTP header' };
  }
  const origin = headers[0]!.origin;
  if (!isServerName(origin)) return { ok: false, status: 400, message: "Invalid server name for Origin" };
  const publicKey = p2pKeyOf(origin);
  if (publicKey === null) {
    return {
      ok: false,
      status: 401,
      message: `Invalid request signature: origin ${
        JSON.stringify(origin)
      } is not a P2P server name (64 lowercase hex digits of its Ed25519 key); this mailbox fetches no keys`,
    };
  }
  let checked = 0;
  for (const h of headers) {
    if (!h.key.startsWith("ed25519:")) continue; // an algorithm we do not know is skipped, as the spec says
    const sig = decodeBase64(h.sig);
    if (sig === null || sig.length !== 64) return { ok: false, status: 401, message: "Invalid request signature" };
    // Without a destination in the header, the sender signed for one of our names: try each.
    const candidates = h.destination !== undefined ? [h.destination] : opts.serverNames;
    let valid = false;
    for (const d of candidates) {
      if (await opts.verify(publicKey, signedBytes(req, origin, d), sig)) {
        valid = true;
        break;
      }
    }
    if (!valid) return { ok: false, status: 401, message: "Invalid request signature" };
    checked++;
  }
  if (checked === 0) return { ok: false, status: 401, message: "Invalid request signature: no ed25519 signature" };
  return { ok: true, origin };
}
