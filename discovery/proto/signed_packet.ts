/**
 * @module
 * The pkarr signed packet (spec §1.2): parsing a relay PUT body, the BEP44
 * signable, and the newer-wins rule. Pure: the Ed25519 check and the
 * public-key check are injected, so this file needs no crypto runtime.
 *
 * ```
 * SignedPacket = pubkey(32) | sig(64) | ts(8, u64 BE, µs) | dns(≤1000)
 * RelayPayload = sig(64) | ts(8) | dns
 * signable     = "3:seqi" ts "e1:v" len(dns) ":" dns
 * ```
 * Parse checks follow `SignedPacket::from_bytes` (`iroh-dns/src/pkarr.rs
 * @v1.0.3`): length, public key, signature, DNS parses (the key is checked
 * only when the signature fails, to name the reason; same outcomes). Nothing
 * checks the timestamp or the TTLs, as upstream.
 */

import { decodeMessage } from "./dns_wire.ts";

/** pubkey + sig + ts. */
export const HEADER_SIZE = 104;
/** Largest DNS part a packet may carry, bytes. */
export const MAX_DNS_PACKET_SIZE = 1000;
/** Smallest and largest relay payload (sig + ts + dns), bytes. */
export const MIN_RELAY_PAYLOAD = 72;
/** See {@link MIN_RELAY_PAYLOAD}. */
export const MAX_RELAY_PAYLOAD = 72 + MAX_DNS_PACKET_SIZE;

/** A verified packet; `bytes` is the whole SignedPacket, the others are views into it. */
export interface SignedPacket {
  /** pubkey | sig | ts | dns: what the store keeps. */
  bytes: Uint8Array;
  /** The 32-byte Ed25519 public key. */
  key: Uint8Array;
  /** The 64-byte signature. */
  sig: Uint8Array;
  /** Signed timestamp, µs since the Unix epoch. */
  ts: bigint;
  /** The DNS message. */
  dns: Uint8Array;
}

/** Why a payload was refused; the message becomes the 400 body's detail. */
export class PacketError extends Error {
  override name = "PacketError";
}

/** Injected checks: the Ed25519 primitives live outside this pure file. */
export interface PacketVerifier {
  /** True if `key` is a valid (decompressable) Ed25519 point. */
  isValidKey(key: Uint8Array): boolean;
  /** Strict Ed25519 verification of `sig` over `msg` by `key`. */
  verify(key: Uint8Array, sig: Uint8Array, msg: Uint8Array): Promise<boolean>;
}

const ASCII = new TextEncoder();

/** The BEP44 signable of a packet: `3:seqi<ts>e1:v<len>:<dns>`. */
export function signable(ts: bigint, dns: Uint8Array): Uint8Array {
  const head = ASCII.encode(`3:seqi${ts}e1:v${dns.length}:`);
  const out = new Uint8Array(head.length + dns.length);
  out.set(head);
  out.set(dns, head.length);
  return out;
}

/** Views of a stored SignedPacket (no checks: the store only holds verified packets). */
export function packetFromBytes(bytes: Uint8Array): SignedPacket {
  if (bytes.length < HEADER_SIZE || bytes.length > HEADER_SIZE + MAX_DNS_PACKET_SIZE) {
    throw new PacketError(`stored packet has ${bytes.length} bytes`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    bytes,
    key: bytes.subarray(0, 32),
    sig: bytes.subarray(32, 96),
    ts: dv.getBigUint64(96),
    dns: bytes.subarray(HEADER_SIZE),
  };
}

/**
 * Checks a relay payload PUT for `key` and returns the SignedPacket it makes.
 * @throws {PacketError} with upstream-like detail for any failed check
 */
export async function parseRelayPayload(
  key: Uint8Array,
  payload: Uint8Array,
  v: PacketVerifier,
): Promise<SignedPacket> {
  if (payload.length < MIN_RELAY_PAYLOAD) {
    throw new PacketError(`relay payload has ${payload.length} bytes, expected at least ${MIN_RELAY_PAYLOAD}`);
  }
  if (payload.length > MAX_RELAY_PAYLOAD) {
    throw new PacketError(
      `DNS packet has ${payload.length - MIN_RELAY_PAYLOAD} bytes, more than the ${MAX_DNS_PACKET_SIZE} allowed`,
    );
  }
  if (key.length !== 32) throw new PacketError("invalid public key");
  const bytes = new Uint8Array(32 + payload.length);
  bytes.set(key);
  bytes.set(payload, 32);
  const p = packetFromBytes(bytes);
  // A good signature proves the key is a curve point, so the costly point check (~40 µs on the
  // event loop) only runs to say why a signature failed.
  if (!(await v.verify(p.key, p.sig, signable(p.ts, p.dns)))) {
    throw new PacketError(v.isValidKey(key) ? "invalid signature" : "invalid public key");
  }
  try {
    decodeMessage(p.dns);
  } catch (e) {
    throw new PacketError(`DNS packet does not parse: ${(e as Error).message}`);
  }
  return p;
}

/** Lexicographic byte order (a prefix sorts first), as Rust's slice `Ord`. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/**
 * `more_recent_than`: true if `a` should replace `b` — a higher timestamp,
 * or on equal timestamps, greater DNS bytes. An identical packet is not newer.
 */
export function isNewer(a: SignedPacket, b: SignedPacket): boolean {
  if (a.ts !== b.ts) return a.ts > b.ts;
  return compareBytes(a.dns, b.dns) > 0;
}
