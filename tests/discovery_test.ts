/**
 * Discovery over real sockets: the pkarr relay on the relay listener, DNS
 * over UDP and TCP checked with Debian's `dig`, DoH with `curl`.
 */

import assert from "node:assert/strict";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { VECTOR, vectorPayload } from "../discovery/proto/testdata.ts";
import { ensureDig, parseDig, run, startDiscoveryStack } from "./support/discovery_stack.ts";
import { dnsMessage, irohTxt, nowUs, relayPayload, testKey } from "./support/pkarr_packet.ts";

const HIGH_AGE =
  'eviction_age_secs = 2000000000\norigins = ["dns.example.org", "."]\npkarr_put_rate_limit = "disabled"';

async function put(base: string, z32: string, body: Uint8Array): Promise<Response> {
  const res = await fetch(`${base}/pkarr/${z32}`, { method: "PUT", body: body.slice() });
  await res.body?.cancel();
  return res;
}

async function getBytes(
  base: string,
  z32: string,
): Promise<{ status: number; bytes: Uint8Array; type: string | null }> {
  const res = await fetch(`${base}/pkarr/${z32}`);
  return { status: res.status, bytes: new Uint8Array(await res.arrayBuffer()), type: res.headers.get("content-type") };
}

async function dig(port: number, ...args: string[]): Promise<string> {
  return await run("dig", ["@127.0.0.1", "-p", String(port), "+time=3", "+tries=1", ...args]);
}

Deno.test("the §1.8 vector: PUT, GET the same bytes, DNS (UDP, TCP, DoH) returns the three TXT with TTL 30", async () => {
  await ensureDig();
  const s = await startDiscoveryStack(HIGH_AGE);
  try {
    const res = await put(s.base, VECTOR.z32, vectorPayload());
    assert.equal(res.status, 204);
    const got = await getBytes(s.base, VECTOR.z32);
    assert.equal(got.status, 200);
    assert.equal(got.type, "application/x-pkarr-signed-packet");
    assert.deepEqual(got.bytes, vectorPayload());

    for (const origin of ["dns.example.org", ""]) {
      const name = `_iroh.${VECTOR.z32}.${origin}`;
      for (const mode of ["+notcp", "+tcp"]) {
        const recs = parseDig(await dig(s.dnsPort, mode, "+noall", "+answer", "TXT", name));
        assert.deepEqual(recs.map((r) => [r.ttl, r.type, r.data]), VECTOR.txt.map((t) => [30, "TXT", `"${t}"`]));
      }
    }
    // Upper case in the query (DNS is case-insensitive; 0x20 randomisation) still finds the key.
    const mixed = parseDig(
      await dig(s.dnsPort, "+noall", "+answer", "TXT", `_IROH.${VECTOR.z32.toUpperCase()}.DNS.example.org`),
    );
    assert.equal(mixed.length, 3);

    // DoH, wire format by GET and POST through curl, JSON by GET.
    const q = dnsPacket.encode({
      id: 7,
      type: "query",
      flags: 0,
      questions: [{ name: `_iroh.${VECTOR.z32}.dns.example.org`, type: "TXT" }],
    });
    const b64 = Buffer.from(q).toString("base64url");
    const viaGet = await run("curl", [
      "-s",
      "-f",
      "-H",
      "accept: application/dns-message",
      `${s.base}/dns-query?dns=${b64}`,
      "-o",
      "-",
    ]);
    void viaGet;
    const getOut = await new Deno.Command("curl", {
      args: [
        "-s",
        "-f",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "accept: application/dns-message",
        `${s.base}/dns-query?dns=${b64}`,
      ],
      stdout: "piped",
    }).output();
    assert.match(new TextDecoder().decode(getOut.stdout), /cache-control: s-maxage=30/i);
    const post = await new Deno.Command("curl", {
      args: [
        "-s",
        "-f",
        "-X",
        "POST",
        "-H",
        "content-type: application/dns-message",
        "--data-binary",
        "@-",
        `${s.base}/dns-query`,
      ],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const w = post.stdin.getWriter();
    await w.write(new Uint8Array(q));
    await w.close();
    const postOut = await post.output();
    assert.ok(postOut.success);
    const m = dnsPacket.decode(Buffer.from(postOut.stdout));
    assert.equal(m.id, 7);
    assert.deepEqual(
      (m.answers ?? []).map((a) => [(a as { ttl: number }).ttl, String((a as { data: Buffer[] }).data[0])]),
      VECTOR.txt.map((t) => [30, t]),
    );
    const json = JSON.parse(
      await run("curl", [
        "-s",
        "-f",
        "-H",
        "accept: application/dns-json",
        `${s.base}/dns-query?name=_iroh.${VECTOR.z32}.&type=TXT`,
      ]),
    );
    assert.equal(json.Status, 0);
    assert.deepEqual(
      json.Answer.map((a: { data: string; TTL: number }) => [a.TTL, a.data]),
      VECTOR.txt.map((t) => [30, `"${t}"`]),
    );
    const refused = await fetch(`${s.base}/dns-query?name=x&type=TXT`, { headers: { accept: "text/html" } });
    await refused.body?.cancel();
    assert.equal(refused.status, 406);
  } finally {
    await s.close();
  }
});

Deno.test("forged signature, wrong key, oversize, older timestamp, garbage: spec codes, store unchanged", async () => {
  const s = await startDiscoveryStack(HIGH_AGE);
  try {
    const k = testKey();
    const ts = nowUs();
    const good = relayPayload(k, ts, irohTxt(k, ["relay=https://good.example/"]));
    assert.equal((await put(s.base, k.z32, good)).status, 204);
    const stored = await getBytes(s.base, k.z32);

    const forged = good.slice();
    forged[forged.length - 1] = forged[forged.length - 1]! ^ 0x01;
    const other = testKey();
    const big = relayPayload(k, ts + 10n, irohTxt(k, Array.from({ length: 40 }, (_, i) => `addr=10.0.0.${i}:12345`)));
    assert.ok(big.length > 1072);
    const cases: [string, string, Uint8Array, number, RegExp | null][] = [
      ["forged signature", k.z32, forged, 400, /invalid body payload: invalid signature/],
      ["another key's path", other.z32, good, 400, /invalid signature/],
      ["oversize", k.z32, big, 400, /more than the 1000/],
      ["older timestamp", k.z32, relayPayload(k, ts - 1n, irohTxt(k, ["relay=https://old.example/"])), 204, null],
      ["garbage", k.z32, crypto.getRandomValues(new Uint8Array(200)), 400, /invalid body payload/],
      // Validly signed, but the DNS part's answer name is a compression pointer to itself.
      [
        "pointer loop",
        k.z32,
        relayPayload(
          k,
          ts + 20n,
          Uint8Array.from([0, 0, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 30, 0, 0]),
        ),
        400,
        /DNS packet does not parse/,
      ],
      ["empty", k.z32, new Uint8Array(0), 400, /at least 72/],
      ["bad key", "notakey", good, 400, /invalid key/],
    ];
    for (const [what, z, body, status, detail] of cases) {
      const res = await fetch(`${s.base}/pkarr/${z}`, { method: "PUT", body: body.slice() });
      const text = await res.text();
      assert.equal(res.status, status, `${what}: ${text}`);
      if (detail) {
        const j = JSON.parse(text);
        assert.equal(j.status, String(status), what);
        assert.match(j.detail, detail, what);
      }
      assert.deepEqual(await getBytes(s.base, k.z32), stored, `${what}: store changed`);
      assert.equal((await getBytes(s.base, other.z32)).status, 404, what);
    }
    // A body beyond the route's limit is not even read.
    const huge = await fetch(`${s.base}/pkarr/${k.z32}`, { method: "PUT", body: new Uint8Array(100_000) });
    await huge.body?.cancel();
    assert.equal(huge.status, 413);
    const m = s.discovery.metrics();
    assert.match(m, /pkarr_publish_total\{outcome="invalid"\} 6/);
    assert.match(m, /pkarr_publish_total\{outcome="stale"\} 1/);
  } finally {
    await s.close();
  }
});

Deno.test("a packet too big for 512 bytes comes back truncated over UDP and whole over TCP", async () => {
  await ensureDig();
  const s = await startDiscoveryStack(HIGH_AGE);
  try {
    const k = testKey();
    const strings = [
      "relay=https://relay.example/",
      ...Array.from({ length: 7 }, (_, i) => `addr=192.168.100.${i}:65000`),
    ];
    const dns = irohTxt(k, strings);
    assert.ok(dns.length > 512 && dns.length <= 1000, `${dns.length} bytes`);
    assert.equal((await put(s.base, k.z32, relayPayload(k, nowUs(), dns))).status, 204);
    const name = `_iroh.${k.z32}.dns.example.org`;
    const udp = await dig(s.dnsPort, "+noedns", "+ignore", "+notcp", "TXT", name);
    assert.match(udp, /flags: qr aa tc/);
    assert.match(udp, /ANSWER: 0/);
    const tcp = parseDig(await dig(s.dnsPort, "+noedns", "+tcp", "+noall", "+answer", "TXT", name));
    assert.deepEqual(tcp.map((r) => r.data), strings.map((t) => `"${t}"`));
    // With EDNS (dig's default 1232) it fits in one UDP reply.
    const edns = parseDig(await dig(s.dnsPort, "+notcp", "+ignore", "+noall", "+answer", "TXT", name));
    assert.equal(edns.length, strings.length);
  } finally {
    await s.close();
  }
});

Deno.test("DNS rcodes: NXDOMAIN for a missing key, name or type; REFUSED outside the origins; SOA/NS at the apex", async () => {
  await ensureDig();
  const s = await startDiscoveryStack(
    'eviction_age_secs = 2000000000\norigins = ["dns.example.org"]\nnameservers = ["ns1.example.org"]',
  );
  try {
    const k = testKey();
    const dns = dnsMessage(k, [
      { name: "_iroh", type: "TXT", ttl: 30, data: [Buffer.from("relay=https://r.example/")] },
      { name: "@", type: "A", ttl: 60, data: "192.0.2.7" },
      { name: "@", type: "NS", ttl: 60, data: "evil.example" },
    ]);
    assert.equal((await put(s.base, k.z32, relayPayload(k, nowUs(), dns))).status, 204);
    const status = async (...a: string[]) => /status: (\w+)/.exec(await dig(s.dnsPort, ...a))![1];
    assert.equal(await status("TXT", `_iroh.${testKey().z32}.dns.example.org`), "NXDOMAIN");
    assert.equal(await status("TXT", `_other.${k.z32}.dns.example.org`), "NXDOMAIN");
    assert.equal(await status("AAAA", `_iroh.${k.z32}.dns.example.org`), "NXDOMAIN");
    assert.equal(await status("TXT", `_iroh.${k.z32}.elsewhere.org`), "REFUSED");
    assert.match(await dig(s.dnsPort, "AXFR", "dns.example.org"), /Transfer failed/);
    const a = parseDig(await dig(s.dnsPort, "+noall", "+answer", "A", `${k.z32}.dns.example.org`));
    assert.deepEqual(a.map((r) => [r.ttl, r.data]), [[60, "192.0.2.7"]]);
    // The NS record inside the packet is never served; the static zone's is.
    const ns = parseDig(await dig(s.dnsPort, "+noall", "+answer", "NS", `${k.z32}.dns.example.org`));
    assert.deepEqual(ns, []);
    const apexNs = parseDig(await dig(s.dnsPort, "+noall", "+answer", "NS", "dns.example.org"));
    assert.deepEqual(apexNs.map((r) => r.data), ["ns1.example.org."]);
    const soa = parseDig(await dig(s.dnsPort, "+noall", "+answer", "SOA", "dns.example.org"));
    assert.match(soa[0]!.data, /^ns1\.example\.org\. hostmaster\.dns\.example\.org\. 1 /);
    assert.match(s.discovery.metrics(), /dns_requests_total\{protocol="udp",rcode="NXDOMAIN"\} 4/);
  } finally {
    await s.close();
  }
});

Deno.test("pkarr_put_rate_limit = simple: a burst of 2 PUTs per IP, then 429 with the wait", async () => {
  const s = await startDiscoveryStack(
    'eviction_age_secs = 2000000000\norigins = ["."]\npkarr_put_rate_limit = "simple"',
  );
  try {
    const k = testKey();
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${s.base}/pkarr/${k.z32}`, {
        method: "PUT",
        body: relayPayload(k, nowUs() + BigInt(i), irohTxt(k, ["relay=https://r/"])).slice(),
      });
      codes.push(res.status);
      const text = await res.text();
      if (res.status === 429) assert.match(text, /^Too Many Requests! Wait for \ds$/);
    }
    assert.deepEqual(codes, [204, 204, 429]);
    // GET is never limited.
    assert.equal((await getBytes(s.base, k.z32)).status, 200);
  } finally {
    await s.close();
  }
});
