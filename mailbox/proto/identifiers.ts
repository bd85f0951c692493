/**
 * @module
 * Matrix identifiers the mailbox reads (spec appendices, "Server Name" and
 * "User Identifiers"), and the P2P rule that turns a server name into its
 * Ed25519 key: Dendrite's P2P demos name a server by the lowercase hex of its
 * public key (`cmd/dendrite-demo-yggdrasil/signing/fetcher.go @v0.13.8`), so
 * no key server is needed.
 */

/** Longest server name we accept, bytes (the spec recommends 230; a user id is at most 255). */
export const MAX_SERVER_NAME_LEN = 255;

/** Longest user id, bytes (spec: "MUST NOT exceed 255 bytes"). */
export const MAX_USER_ID_LEN = 255;

const IPV4_RE = /^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$/;
const IPV6_RE = /^\[[0-9A-Fa-f:.]{2,45}\]$/;
const DNS_RE = /^[0-9A-Za-z.-]{1,255}$/;
const P2P_RE = /^[0-9a-f]{64}$/;

/**
 * True if `name` follows the spec's server-name grammar:
 * `hostname [":" port]`, hostname an IPv4 literal, a bracketed IPv6 literal
 * or a DNS name.
 */
export function isServerName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_SERVER_NAME_LEN) return false;
  let host = name;
  const colon = name.lastIndexOf(":");
  // A colon after the closing bracket (or in a name without brackets) starts the port.
  if (colon >= 0 && colon > name.lastIndexOf("]")) {
    const port = name.slice(colon + 1);
    if (!/^[0-9]{1,5}$/.test(port)) return false;
    host = name.slice(0, colon);
  }
  if (host.startsWith("[")) return IPV6_RE.test(host);
  if (IPV4_RE.test(host)) return host.split(".").every((o) => Number(o) <= 255);
  return DNS_RE.test(host);
}

/** A user id split at its first colon. */
export interface UserId {
  /** Between `@` and the first `:`. */
  localpart: string;
  /** The server name: after the first `:`. */
  domain: string;
}

/**
 * Parses a user id the way Dendrite's relay does (`spec.NewUserID(v, false)`:
 * historical localparts allowed): `@`, a non-empty localpart of printable
 * ASCII, `:`, a valid server name; at most 255 bytes. `null` if invalid.
 */
export function parseUserId(text: string): UserId | null {
  if (text.length > MAX_USER_ID_LEN || !text.startsWith("@")) return null;
  const colon = text.indexOf(":");
  if (colon < 2) return null;
  const localpart = text.slice(1, colon);
  if (!/^[\x21-\x39\x3b-\x7e]+$/.test(localpart)) return null;
  const domain = text.slice(colon + 1);
  return isServerName(domain) ? { localpart, domain } : null;
}

/** True if `name` is a P2P server name: 64 lowercase hex digits, an Ed25519 public key. */
export function isP2PServerName(name: string): boolean {
  return P2P_RE.test(name);
}

/** The Ed25519 public key a P2P server name spells, or `null` if it is not one. */
export function p2pKeyOf(name: string): Uint8Array | null {
  if (!P2P_RE.test(name)) return null;
  const key = new Uint8Array(32);
  for (let k = 0; k < 32; k++) key[k] = parseInt(name.slice(2 * k, 2 * k + 2), 16);
  return key;
}
