// The part of npm `dns-packet` the pebble DNS stub uses. The package ships no types, and type-checking it untyped
// next to other files crashes Deno 2.9.6's TypeScript ("Debug Failure. False expression.").
import type { Buffer } from "node:buffer";

/** A question of a DNS message. */
export interface Question {
  type: string;
  name: string;
  class?: string;
}

/** A resource record. */
export interface Answer {
  type: string;
  name: string;
  ttl?: number;
  class?: string;
  data: string;
}

/** A DNS message. */
export interface Packet {
  type?: "query" | "response";
  id?: number;
  flags?: number;
  questions?: Question[];
  answers?: Answer[];
}

/** Parses a DNS message. */
export function decode(buf: Buffer): Packet;
/** Serialises a DNS message. */
export function encode(packet: Packet): Buffer;
/** The AA flag. */
export const AUTHORITATIVE_ANSWER: number;

declare const dnsPacket: { decode: typeof decode; encode: typeof encode; AUTHORITATIVE_ANSWER: number };
export default dnsPacket;
