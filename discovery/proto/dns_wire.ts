/**
 * @module
 * The one place the DNS wire library is imported: npm `dns-packet` 5.6.1
 * (mafintosh, ~60M downloads/week, no native code, one tiny dependency).
 * Chosen over hand-writing a codec because its decoder is already hardened
 * where this service meets hostile bytes: names are capped at 254 octets
 * and compression pointers may only point backwards, so pointer loops end
 * with an error instead of a spin; every read is bounds-checked. It wants
 * Node `Buffer`s, so this file adapts `Uint8Array` views without copying.
 *
 * Encoding does not compress names. That makes our answers a little larger
 * than hickory's (the TC rule covers it) and keeps the encoder simple.
 */

import { Buffer } from "node:buffer";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";
import type { Answer, Packet, Question } from "dns-packet";

export type { Answer, Packet, Question };

/** A `Buffer` view over `bytes` (no copy), as dns-packet requires. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decodes a whole DNS message.
 * @throws {Error} dns-packet's error for malformed input (overflow, bad pointer, bad label)
 */
export function decodeMessage(bytes: Uint8Array): Packet {
  return dnsPacket.decode(asBuffer(bytes));
}

/** Encodes a DNS message (names uncompressed). */
export function encodeMessage(p: Packet): Uint8Array {
  const b = dnsPacket.encode(p);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Header flag bits (RFC 1035 §4.1.1). */
export const FLAG_QR = 0x8000;
/** Authoritative answer. */
export const FLAG_AA = 0x0400;
/** Truncated. */
export const FLAG_TC = 0x0200;
/** Recursion desired (copied from the query). */
export const FLAG_RD = 0x0100;
