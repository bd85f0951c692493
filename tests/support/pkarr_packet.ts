/**
 * @module
 * Signs pkarr packets for tests, written from the spec (§1.2), with
 * `@noble/curves` Ed25519 and `dns-packet`: a key pair, a DNS message of
 * TXT (or other) records under `<name>.<z32>`, and the relay payload
 * `sig | ts | dns`. Independent of the server's own parser.
 */

import { ed25519 } from "@noble/curves/ed25519";
import { Buffer } from "node:buffer";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";
import type { Answer } from "dns-packet";

const ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769";

/** z-base-32 of `bytes` (test copy, independent of discovery/proto/z32.ts). */
export function z32(bytes: Uint8Array): string {
  let bits = "";
  for (const b of bytes) bits += b.toString(2).padStart(8, "0");
  while (bits.length % 5) bits += "0";
  let out = "";
  for (let i = 0; i < bits.length; i += 5) out += ALPHABET[parseInt(bits.slice(i, i + 5), 2)];
  return out;
}

/** A test identity. */
export interface TestKey {
  seed: Uint8Array;
  pub: Uint8Array;
  z32: string;
}

/** A fresh random key (or the one from `seed`). */
export function testKey(seed: Uint8Array = ed25519.utils.randomSecretKey()): TestKey {
  const pub = ed25519.getPublicKey(seed);
  return { seed, pub, z32: z32(pub) };
}

/** `3:seqi<ts>e1:v<len>:<dns>` */
function signable(ts: bigint, dns: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(`3:seqi${ts}e1:v${dns.length}:`);
  const out = new Uint8Array(head.length + dns.length);
  out.set(head);
  out.set(dns, head.length);
  return out;
}

/** A DNS reply message holding `answers`; relative names get `.<z32>` appended, `@` is the apex. */
export function dnsMessage(k: TestKey, answers: Answer[]): Uint8Array {
  const full = answers.map((a) => ({ ...a, name: a.name === "@" ? k.z32 : `${a.name}.${k.z32}` }) as Answer);
  const b = dnsPacket.encode({ id: 0, type: "response", flags: 0, answers: full });
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** TXT records at `_iroh`, one string each, TTL 30: what iroh publishes. */
export function irohTxt(k: TestKey, strings: string[], ttl = 30): Uint8Array {
  return dnsMessage(k, strings.map((s): Answer => ({ name: "_iroh", type: "TXT", ttl, data: [Buffer.from(s)] })));
}

/** The relay payload `sig | ts | dns` signed by `k`. */
export function relayPayload(k: TestKey, ts: bigint, dns: Uint8Array): Uint8Array {
  const sig = ed25519.sign(signable(ts, dns), k.seed);
  const out = new Uint8Array(72 + dns.length);
  out.set(sig);
  new DataView(out.buffer).setBigUint64(64, ts);
  out.set(dns, 72);
  return out;
}

/** µs since the epoch now (what iroh stamps). */
export function nowUs(): bigint {
  return BigInt(Date.now()) * 1000n;
}
