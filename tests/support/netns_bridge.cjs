/**
 * @module
 * The in-namespace half of the bridge of `netns.ts`: a dumb TCP → Unix
 * socket pipe that also holds the network namespace open.
 *
 * It is started by `netns.ts` as `unshare --net` + `ip link set lo up` +
 * `exec node netns_bridge.cjs PORT=SOCKET...`, so its pid is the pid of the
 * namespace's first process (other commands join it with `nsenter --net`).
 *
 * - for each `PORT=SOCKET` argument it listens on `127.0.0.1:PORT` inside the
 *   namespace and pipes every accepted connection to the Unix socket SOCKET,
 *   which the test process serves from the root namespace (filesystem
 *   sockets cross network namespaces; TCP on loopback does not);
 * - it prints `ready <pid>` once every listener is bound, so the parent never
 *   sleeps waiting for it;
 * - it exits when its stdin ends, so a crashed parent cannot leave the
 *   namespace (or this process) behind.
 *
 * All logic (header rewriting, taps, counters) lives on the Unix-socket side
 * in the test process; this file stays small so nothing here needs testing.
 */
"use strict";

const net = require("node:net");

/** Pipes two sockets both ways; half-closes follow EOFs, errors end both. */
function splice(a, b) {
  a.pipe(b);
  b.pipe(a);
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", destroyBoth);
  b.on("error", destroyBoth);
  a.on("close", () => b.destroy());
  b.on("close", () => a.destroy());
}

/** Binds one `127.0.0.1:port` → `socketPath` forward; resolves once listening. */
function forward(port, socketPath) {
  const server = net.createServer({ allowHalfOpen: true }, (inner) => {
    inner.setNoDelay(true);
    const outer = net.createConnection({ path: socketPath, allowHalfOpen: true });
    splice(inner, outer);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => resolve(server));
  });
}

async function main() {
  const maps = process.argv.slice(2).map((arg) => {
    const eq = arg.indexOf("=");
    const port = Number(arg.slice(0, eq));
    if (eq < 1 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`Bad mapping: ${arg}`);
    return { port, socketPath: arg.slice(eq + 1) };
  });
  await Promise.all(maps.map((m) => forward(m.port, m.socketPath)));
  process.stdout.write(`ready ${process.pid}\n`);
  // The parent keeps our stdin open for as long as the namespace should live.
  process.stdin.on("data", () => {});
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
}

main().catch((e) => {
  process.stderr.write(`netns_bridge: ${e && e.message}\n`);
  process.exit(1);
});
