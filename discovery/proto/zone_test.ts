import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { perturb, Rng } from "../../tests/support/bytes.ts";
import { decodeMessage, encodeMessage, type Question } from "./dns_wire.ts";
import { CLASSIC_UDP_SIZE, respond } from "./responder.ts";
import { VECTOR } from "./testdata.ts";
import { answerQuestion, locate, packetRecords, type RecordLookup } from "./zone.ts";

const ORIGINS = ["dns.example.org", ""];
const vectorLookup: RecordLookup = (_key, z32) =>
  Promise.resolve(z32 === VECTOR.z32 ? packetRecords(VECTOR.dns, VECTOR.z32) : null);

function query(name: string, type: Question["type"] = "TXT", extra: Record<string, unknown> = {}): Uint8Array {
  return encodeMessage({
    id: 0xbeef,
    type: "query",
    flags: 0x0100,
    questions: [{ name, type }],
    ...extra,
  });
}

Deno.test("locate() finds origin, key and relative name; config order decides; case and final dot ignored", () => {
  const l = locate(`_iroh.${VECTOR.z32.toUpperCase()}.DNS.example.org.`, ORIGINS);
  assert.equal(l.kind, "key");
  if (l.kind === "key") assert.deepEqual([l.origin, l.z32, l.sub], ["dns.example.org", VECTOR.z32, "_iroh"]);
  const root = locate(`_iroh.${VECTOR.z32}.`, ORIGINS);
  assert.equal(root.kind === "key" && root.origin, "");
  const apex = locate(`${VECTOR.z32}.dns.example.org`, ORIGINS);
  assert.equal(apex.kind === "key" && apex.sub, "");
  assert.deepEqual(locate("dns.example.org", ORIGINS), { kind: "static", origin: "dns.example.org", apex: true });
  assert.deepEqual(locate("www.dns.example.org", ORIGINS), { kind: "static", origin: "dns.example.org", apex: false });
  assert.deepEqual(locate("www.example.com", ["dns.example.org"]), { kind: "outside" });
  assert.deepEqual(locate("xdns.example.org", ["dns.example.org"]), { kind: "outside" });
});

Deno.test("packetRecords() keeps only records under the key and drops SOA/NS", () => {
  const r = packetRecords(VECTOR.dns, VECTOR.z32);
  assert.deepEqual([...r.keys()], ["_iroh"]);
  assert.deepEqual(
    r.get("_iroh")!.map((a) => String((a as { data: Buffer[] }).data[0])),
    VECTOR.txt,
  );
});

Deno.test("answerQuestion(): store errors are REFUSED; a miss is NXDOMAIN with the SOA", async () => {
  const failing: RecordLookup = () => Promise.reject(new Error("down"));
  const z = { origins: ORIGINS };
  const q = { name: `_iroh.${VECTOR.z32}.dns.example.org`, type: "TXT" as const };
  assert.equal((await answerQuestion(q, z, failing)).rcode, "REFUSED");
  const miss = await answerQuestion({ ...q, name: `_x.${VECTOR.z32}.dns.example.org` }, z, vectorLookup);
  assert.equal(miss.rcode, "NXDOMAIN");
  assert.equal(miss.authorities[0]?.type, "SOA");
  const ok = await answerQuestion(q, z, vectorLookup);
  assert.equal(ok.answers.length, 3);
  assert.ok(ok.answers.every((a) => a.name === q.name && (a as { ttl: number }).ttl === 30));
});

Deno.test("respond(): header-only FORMERR/NOTIMP, no reply to responses or runts, EDNS echoed, TC when too big", async () => {
  const z = { origins: ORIGINS };
  assert.equal(await respond(new Uint8Array(11), "udp", z, vectorLookup), null);
  const asResponse = query("x.");
  asResponse[2] = asResponse[2]! | 0x80;
  assert.equal(await respond(asResponse, "udp", z, vectorLookup), null);
  const notify = query("x.");
  notify[2] = (notify[2]! & 0x87) | (4 << 3);
  assert.equal((await respond(notify, "udp", z, vectorLookup))!.rcode, "NOTIMP");
  const twoQ = query("x.");
  twoQ[5] = 2;
  const fe = (await respond(twoQ, "udp", z, vectorLookup))!;
  assert.deepEqual([fe.rcode, fe.bytes.length, fe.bytes[0], fe.bytes[1]], ["FORMERR", 12, 0xbe, 0xef]);

  const name = `_iroh.${VECTOR.z32}.dns.example.org`;
  const withOpt = query(name, "TXT", {
    additionals: [{
      type: "OPT",
      name: ".",
      udpPayloadSize: 4096,
      extendedRcode: 0,
      ednsVersion: 0,
      flags: 0,
      options: [],
    }],
  });
  const r = (await respond(withOpt, "udp", z, vectorLookup))!;
  const m = decodeMessage(r.bytes);
  assert.equal(m.answers!.length, 3);
  assert.equal((m.additionals![0] as { udpPayloadSize: number }).udpPayloadSize, 1232);
  assert.ok(m.flags! & 0x0400); // AA

  // A big packet: truncated at 512 without EDNS over UDP, whole over a stream.
  const big = new Map([[
    "_iroh",
    Array.from({ length: 12 }, (_, i) => ({
      name: `_iroh.${VECTOR.z32}`,
      type: "TXT" as const,
      ttl: 30,
      data: [Buffer.from(`addr=192.168.100.${i}:65000`)],
    })),
  ]]);
  const bigLookup: RecordLookup = () => Promise.resolve(big);
  const udp = (await respond(query(name), "udp", z, bigLookup))!;
  assert.ok(udp.truncated && udp.bytes.length <= CLASSIC_UDP_SIZE);
  assert.ok(decodeMessage(udp.bytes).flags! & 0x0200); // TC
  const tcp = (await respond(query(name), "stream", z, bigLookup))!;
  assert.equal(decodeMessage(tcp.bytes).answers!.length, 12);
});

Deno.test("respond() never throws on perturbed or random input (seeded)", async () => {
  const rng = new Rng(1105);
  const z = { origins: ORIGINS };
  const base = query(`_iroh.${VECTOR.z32}.dns.example.org`);
  for (let i = 0; i < 3000; i++) {
    const input = i % 3 === 0 ? rng.bytes(rng.int(300)) : perturb(rng, base);
    const r = await respond(input, i % 2 ? "udp" : "stream", z, vectorLookup);
    if (r) assert.ok(r.bytes.length >= 12, `case ${i}`);
  }
});
