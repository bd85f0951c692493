/**
 * @module
 * A real iroh 1.x endpoint finds its peer through our discovery service and
 * connects through our relay (npm `@number0/iroh` 1.1.0, each endpoint in a
 * loopback-only network namespace of its own, `support/netns.ts`):
 *
 * - A runs with the minimal preset and our relay as home relay. Its record
 *   (`relay=http://127.0.0.1:3340/`, signed with A's key) is published to our
 *   `/pkarr` by a pkarr client that is not ours: npm `pkarr` under Node.
 * - B is built with iroh's **n0 preset** and given nothing but A's endpoint
 *   id. With that preset iroh asks the system resolver for
 *   `_iroh.<z32>.dns.iroh.link.` TXT, so our discovery serves the origin
 *   `dns.iroh.link`, and B's process sees a `resolv.conf` naming 127.0.0.1
 *   (a private mount namespace bind-mounts it over `/etc/resolv.conf`, as
 *   `ip netns exec` does with `/etc/netns/<name>/resolv.conf`).
 * - iroh's resolver always asks port 53 and starts with UDP; B's namespace
 *   forwards TCP 53 to our DNS server's TCP port, and
 *   `support/dns_udp_forwarder.cjs` turns UDP 53 queries into TCP ones.
 */

import assert from "node:assert/strict";
import { ALPN, nextEvent, PEER_SCRIPT, RELAY_PORT_IN_NS, RELAY_URL, startPeer } from "./support/iroh_echo.ts";
import { Netns } from "./support/netns.ts";
import { run, startDiscoveryStack } from "./support/discovery_stack.ts";
import { testKey, z32 } from "./support/pkarr_packet.ts";
import { toHex } from "./support/bytes.ts";

const PUBLISH = new URL("./support/pkarr_publish.mjs", import.meta.url).pathname;
const FORWARDER = new URL("./support/dns_udp_forwarder.cjs", import.meta.url).pathname;
const BYTES = 64 * 1024;
const TIMEOUT_MS = 60_000;

Deno.test("iroh 1.x with the n0 preset resolves a peer through our DNS (pkarr-published by npm pkarr) and connects via our relay", async () => {
  const s = await startDiscoveryStack('origins = ["dns.iroh.link"]\npkarr_put_rate_limit = "disabled"');
  const resolv = await Deno.makeTempFile({ prefix: "resolv-", suffix: ".conf" });
  try {
    await Deno.writeTextFile(resolv, "nameserver 127.0.0.1\n");
    const relayTarget = { hostname: "127.0.0.1", port: s.relay.httpAddr!.port };
    await using nsA = await Netns.create([{ port: RELAY_PORT_IN_NS, target: relayTarget }]);
    await using nsB = await Netns.create([
      { port: RELAY_PORT_IN_NS, target: relayTarget },
      { port: 53, target: { hostname: "127.0.0.1", port: s.dnsPort } },
    ]);
    const a = testKey();
    const seedHex = toHex(a.seed);
    const { peer: acceptor, id } = await startPeer(nsA, { mode: "accept-echo", secretKeyHex: seedHex });

    // The third-party client publishes A's record to our relay listener.
    const published = JSON.parse(await run("node", [PUBLISH, `${s.base}/pkarr`, seedHex, `relay=${RELAY_URL}`]));
    assert.deepEqual(published, { status: 204, z32: a.z32 });

    const fwd = nsB.spawn("node", [FORWARDER, "53", "53"]);
    assert.equal(await fwd.nextLine({ timeoutMs: 10_000 }), "ready");
    const before = s.discovery.service.metrics.dnsRequests.get({ protocol: "tcp", rcode: "NOERROR" });
    // Which keys the DNS side looked up (the service's packet read, wrapped).
    const svc = s.discovery.service;
    const lookedUp: string[] = [];
    const read = svc.getPacket.bind(svc);
    svc.getPacket = (key: Uint8Array) => {
      lookedUp.push(z32(key));
      return read(key);
    };
    const dialer = nsB.spawn("unshare", [
      "--mount",
      "--propagation",
      "private",
      "--",
      "sh",
      "-c",
      'mount --bind "$0" /etc/resolv.conf && exec node "$@"',
      resolv,
      PEER_SCRIPT,
      JSON.stringify({
        mode: "connect-send",
        preset: "n0",
        byIdOnly: true,
        peerId: id,
        alpn: ALPN,
        bytes: BYTES,
        opTimeoutMs: TIMEOUT_MS,
      }),
    ]);
    const done = await nextEvent(dialer, "done", TIMEOUT_MS);
    assert.equal(done.intact, true);
    assert.equal(done.bytes, BYTES);
    const echoed = await nextEvent(acceptor, "echoed", TIMEOUT_MS);
    assert.equal(echoed.bytes, BYTES);
    // B learned A's relay from our DNS answer: its only path to A is our relay.
    const paths = done.paths as { isRelay: boolean; isSelected: boolean; remoteAddr: string }[];
    assert.ok(paths.some((p) => p.isSelected && p.isRelay && p.remoteAddr === RELAY_URL), JSON.stringify(paths));
    assert.ok(s.discovery.service.metrics.dnsRequests.get({ protocol: "tcp", rcode: "NOERROR" }) > before);
    // B found A by asking our DNS for A's key (there is no other way: n0's pkarr relay is out of reach).
    assert.ok(lookedUp.includes(a.z32), `looked up: ${lookedUp.join(", ")}`);
    assert.equal(svc.metrics.pkarrGet.get({ outcome: "found" }), 0);
    assert.ok(nsB.stats(RELAY_PORT_IN_NS).bytesUp >= BYTES);
    await dialer.send("close");
    await nextEvent(dialer, "exit", TIMEOUT_MS);
  } finally {
    await s.close();
    await Deno.remove(resolv);
  }
});
