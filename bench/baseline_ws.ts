/**
 * @module
 * Baseline for the 1.x WebSocket path: the thinnest Deno program that
 * accepts WebSockets and forwards each binary message to the paired socket.
 * No authentication, no parsing: a connection names itself and its peer in
 * the query (`/?me=3&to=4`), and every message it sends goes to `to` as is.
 *
 * `Deno.serve` + `Deno.upgradeWebSocket` do the HTTP and WebSocket work in
 * Rust, so this is what "Deno itself" can forward; the relay's throughput is
 * reported as a ratio against it. Prints `{"event":"listening","port":N}`.
 */

/** Open sockets by their `me` id. */
const sockets = new Map<string, WebSocket>();

function handle(req: Request): Response {
  const url = new URL(req.url);
  const me = url.searchParams.get("me") ?? "";
  const to = url.searchParams.get("to");
  const { socket, response } = Deno.upgradeWebSocket(req);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => sockets.set(me, socket);
  socket.onclose = () => {
    if (sockets.get(me) === socket) sockets.delete(me);
  };
  if (to !== null) {
    socket.onmessage = (ev) => {
      const peer = sockets.get(to);
      if (peer !== undefined && peer.readyState === WebSocket.OPEN) peer.send(ev.data);
    };
  }
  return response;
}

if (import.meta.main) {
  Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: (addr) => console.log(JSON.stringify({ event: "listening", port: addr.port })),
  }, handle);
}
