/**
 * @module
 * Load generator of the discovery benchmark (its own process; it uses none
 * of the code under test):
 * 1. makes `keys` Ed25519 keys and signed relay payloads (WebCrypto), each
 *    with iroh's three TXT records, before anything is timed;
 * 2. PUTs them all to `/pkarr/<z32>` with `putConcurrency` requests in
 *    flight, timed: `puts_per_s` (every PUT must get 204), and the
 *    server's CPU time per PUT;
 * 3. UDP: `sockets` sockets each keep `window` TXT queries (round-robin over
 *    the stored keys) in flight for `measureMs`; a reply sends the next
 *    query, a socket with no reply for 50 ms refills its window. Run against the echo
 *    baseline and our DNS server alternately, `rounds` times each; the best
 *    round counts. Our replies are checked (id, NOERROR, three answers).
 *    Each server's CPU time per answered query is reported too: on a
 *    shared machine it moves less than the rates do.
 *
 * Input: one JSON argument; output: one JSON line of figures.
 */

// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { irohTxt, type TestKey, z32 } from "../tests/support/pkarr_packet.ts";
import { cpuSeconds } from "./_proc.ts";

interface Spec {
  http: number;
  dns: number;
  echo: number;
  /** Server pids, for CPU time per query. */
  dnsPid: number;
  echoPid: number;
  keys: number;
  putConcurrency: number;
  sockets: number;
  window: number;
  measureMs: number;
  rounds: number;
}

const spec = JSON.parse(Deno.args[0]!) as Spec;

async function makePayload(i: number): Promise<{ z32: string; body: Uint8Array }> {
  const kp = await crypto.subtle.generateKey("Ed25519", true, ["sign", "verify"]) as CryptoKeyPair;
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey));
  const k: TestKey = { seed: new Uint8Array(32), pub, z32: z32(pub) };
  const dns = irohTxt(k, [
    `relay=https://relay${i % 10}.example.org/`,
    `addr=192.0.2.${i % 250}:4433`,
    "user-data=bench",
  ]);
  const ts = BigInt(Date.now()) * 1000n + BigInt(i);
  const head = new TextEncoder().encode(`3:seqi${ts}e1:v${dns.length}:`);
  const signable = new Uint8Array(head.length + dns.length);
  signable.set(head);
  signable.set(dns, head.length);
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", kp.privateKey, signable));
  const body = new Uint8Array(72 + dns.length);
  body.set(sig);
  new DataView(body.buffer).setBigUint64(64, ts);
  body.set(dns, 72);
  return { z32: k.z32, body };
}

const payloads = await Promise.all(Array.from({ length: spec.keys }, (_, i) => makePayload(i)));

// 2. PUTs.
let next = 0;
let bad = 0;
const putCpu0 = cpuSeconds(spec.dnsPid);
const t0 = performance.now();
await Promise.all(Array.from({ length: spec.putConcurrency }, async () => {
  while (next < payloads.length) {
    const p = payloads[next++]!;
    const res = await fetch(`http://127.0.0.1:${spec.http}/pkarr/${p.z32}`, { method: "PUT", body: p.body.slice() });
    await res.body?.cancel();
    if (res.status !== 204) bad++;
  }
}));
const putSeconds = (performance.now() - t0) / 1000;
const putCpuUs = ((cpuSeconds(spec.dnsPid) - putCpu0) * 1e6) / payloads.length;

// 3. UDP queries.
const queries = payloads.map((p, i) =>
  new Uint8Array(dnsPacket.encode({
    id: i & 0xffff,
    type: "query",
    flags: 0x0100,
    questions: [{ name: `_iroh.${p.z32}.dns.example.org`, type: "TXT" }],
  }))
);

async function udpRound(
  port: number,
  pid: number,
  check: boolean,
): Promise<{ qps: number; wrong: number; cpuUs: number }> {
  const cpu0 = cpuSeconds(pid);
  let answered = 0;
  let wrong = 0;
  let running = true;
  const t = performance.now();
  const socks = Array.from(
    { length: spec.sockets },
    () => Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" }),
  );
  const target = { transport: "udp" as const, hostname: "127.0.0.1", port };
  let qi = 0;
  const loops = socks.map(async (s) => {
    let lastReply = performance.now();
    const send = () => s.send(queries[qi++ % queries.length]!, target).catch(() => {});
    for (let i = 0; i < spec.window; i++) send();
    // Refill the window if replies stop (UDP may drop under load).
    const refill = setInterval(() => {
      if (performance.now() - lastReply > 50) { for (let i = 0; i < spec.window; i++) send(); }
    }, 50);
    try {
      while (running) {
        const [d] = await s.receive();
        lastReply = performance.now();
        answered++;
        if (check && answered % 97 === 0) {
          const m = dnsPacket.decode(Buffer.from(d));
          if ((m.flags! & 0xf) !== 0 || m.answers?.length !== 3) wrong++;
        }
        if (running) send();
      }
    } catch {
      // socket closed at the end of the round
    } finally {
      clearInterval(refill);
    }
  });
  await new Promise((r) => setTimeout(r, spec.measureMs));
  running = false;
  const elapsed = (performance.now() - t) / 1000;
  const count = answered;
  const cpu = cpuSeconds(pid) - cpu0;
  for (const s of socks) s.close();
  await Promise.all(loops);
  return { qps: count / elapsed, wrong, cpuUs: (cpu * 1e6) / Math.max(1, count) };
}

let echoBest = 0;
let dnsBest = 0;
let echoCpu = Infinity;
let dnsCpu = Infinity;
let wrong = 0;
for (let r = 0; r < spec.rounds; r++) {
  const order = r % 2 === 0 ? ["echo", "dns"] : ["dns", "echo"];
  for (const side of order) {
    if (side === "echo") {
      const res = await udpRound(spec.echo, spec.echoPid, false);
      echoBest = Math.max(echoBest, res.qps);
      echoCpu = Math.min(echoCpu, res.cpuUs);
    } else {
      const res = await udpRound(spec.dns, spec.dnsPid, true);
      dnsBest = Math.max(dnsBest, res.qps);
      dnsCpu = Math.min(dnsCpu, res.cpuUs);
      wrong += res.wrong;
    }
  }
}

console.log(JSON.stringify({
  puts: payloads.length,
  puts_bad: bad,
  puts_per_s: payloads.length / putSeconds,
  put_cpu_us: putCpuUs,
  dns_qps: dnsBest,
  echo_qps: echoBest,
  dns_cpu_us: dnsCpu,
  echo_cpu_us: echoCpu,
  dns_wrong: wrong,
}));
