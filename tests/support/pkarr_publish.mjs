/**
 * @module
 * Publishes an iroh endpoint's record with a pkarr client that is not ours:
 * npm `pkarr` 1.3.0 (Nuhvi's JavaScript client, libsodium signatures,
 * `dns-packet` encoding), run under Node. It signs TXT records at `_iroh`
 * exactly as iroh does (one `key=value` string each, TTL 30) and PUTs them
 * with `Pkarr.relayPut`, which sends the relay payload to `<relay>/<z32>`.
 *
 * Usage: `node pkarr_publish.mjs <pkarr base URL> <seed hex> <txt>...`
 * Prints one JSON line: `{ "status": <HTTP status>, "z32": "…" }`.
 */

import { Pkarr, SignedPacket } from "pkarr";

const [relay, seedHex, ...strings] = process.argv.slice(2);
const keyPair = Pkarr.generateKeyPair(Buffer.from(seedHex, "hex"));
const packet = {
  id: 0,
  type: "response",
  flags: 0,
  answers: strings.map((s) => ({ name: "_iroh", type: "TXT", class: "IN", ttl: 30, data: [Buffer.from(s)] })),
};
const signed = SignedPacket.fromPacket(keyPair, packet);
const res = await Pkarr.relayPut(relay, signed);
await res.arrayBuffer();
const { z32 } = await import("pkarr");
process.stdout.write(JSON.stringify({ status: res.status, z32: z32.encode(keyPair.publicKey) }) + "\n");
