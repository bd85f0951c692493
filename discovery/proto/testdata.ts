/**
 * @module
 * The spec's worked vector (§1.8), shared by the proto, store, HTTP and
 * DNS tests: one packet signed in 2023 (so tests using it set
 * `eviction_age_secs` high) with relay, addr and user-data TXT records.
 */

function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, "");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The §1.8 vector. */
export const VECTOR = {
  seed: hex("abdaadffee096b95a1ed91430083f8b294468b975bd8eacfb391689703fdcc10"),
  pubkey: hex("3cf359f65ae705eb279a5750eec57f4ac6efc635e04d92d60eadcca87d250f18"),
  z32: "8u3iu714hhn6sjh4k7eq7tm9jmdq9ttihbg3fioqizgko9jfbhcy",
  ts: 1700000000000000n,
  dns: hex(
    `000080000000000300000000055f69726f6834387533697537313468686e36736a68346b3765
    7137746d396a6d6471397474696862673366696f71697a676b6f396a66626863790000100001
    0000001e001b1a72656c61793d68747470733a2f2f6578616d706c652e636f6d2fc00c001000
    010000001e001413616464723d3132372e302e302e313a31323334c00c001000010000001e00
    1110757365722d646174613d666f6f626172`,
  ),
  sig: hex(
    `56659efedb3e4ea5f9000aa29815353c70ab7cc2c1deeeb64b685847dad48b47
     80f6895f8e50529a882374f0deef822a3f86e9d0e5b4bedca440c51509010f08`,
  ),
  tsBytes: hex("00060a24181e4000"),
  /** The three TXT strings, in order. */
  txt: ["relay=https://example.com/", "addr=127.0.0.1:1234", "user-data=foobar"],
};

/** The vector's PUT body: sig | ts | dns (242 bytes). */
export function vectorPayload(): Uint8Array {
  const out = new Uint8Array(64 + 8 + VECTOR.dns.length);
  out.set(VECTOR.sig);
  out.set(VECTOR.tsBytes, 64);
  out.set(VECTOR.dns, 72);
  return out;
}
