/**
 * @module
 * The DNS benchmark's baseline: the smallest UDP server Deno can run (each
 * datagram is sent straight back), on the same runtime and socket API as
 * our DNS server, so `dns_ratio` = our DNS QPS ÷ this server's datagrams/s
 * measures what answering a query costs on top of the socket itself.
 * Prints `{"event":"listening","port":…}`; exits when stdin ends.
 */

const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
console.log(JSON.stringify({ event: "listening", port: (sock.addr as Deno.NetAddr).port }));
(async () => {
  for await (const _ of Deno.stdin.readable) {
    // run until stdin ends
  }
  Deno.exit(0);
})();
for (;;) {
  const [data, from] = await sock.receive();
  sock.send(data, from).catch(() => {});
}
