/**
 * @module
 * Measures what a password-guessing crowd does to a real user (issue 9):
 * starts `main.ts` with a standalone IMAP listener and one `[imap.users]`
 * entry (default PBKDF2 cost), opens `--sessions` guessing sessions from
 * 127.0.0.2 (or `--sources` addresses) that send wrong passwords back to back, and meanwhile logs the
 * real user in from 127.0.0.3 `--logins` times, timing connect → tagged OK.
 * Finally it sends SIGTERM with the guessers still connected and times the
 * exit. Prints one JSON line.
 *
 * ```sh
 * node_modules/.bin/deno run -A bench/imap_login_contention.ts [--sessions=500] [--sources=1] [--logins=5] [--warmup-ms=3000]
 * ```
 *
 * Separate from `bench/main.ts` (relay throughput): a one-off attack scenario, not a speed target.
 */

import { hashPassword } from "../imap_metadata/mod.ts";
import { SourceImapClient as Line } from "../tests/support/imap_line_client.ts";
import { freePort } from "./_proc.ts";

const args = Object.fromEntries(
  Deno.args.filter((a) => a.startsWith("--")).map((a) => a.slice(2).split("=") as [string, string]),
);
const SESSIONS = Number(args.sessions ?? 500);
const LOGINS = Number(args.logins ?? 5);
const WARMUP_MS = Number(args["warmup-ms"] ?? 3000);
/** Guessers are spread over this many source addresses (127.0.0.10, .11, …). */
const SOURCES = Math.min(200, Number(args.sources ?? 1));
/** A real login slower than this counts as failed (the script never waits longer). */
const LOGIN_LIMIT_MS = 60_000;

const dir = await Deno.makeTempDir({ prefix: "imap-contention-" });
const port = freePort();
const hash = await hashPassword("right horse battery");
await Deno.writeTextFile(
  `${dir}/config.toml`,
  `enable_relay = false
strict = false # the per-source keys below may be unknown to this build
[log]
level = "warn"
[imap]
bind_addr = "0.0.0.0:${port}"
iroh_relay_url = "https://relay.example/"
login = "users"
[imap.users]
alice = "${hash}"
[imap.limits]
max_sessions = ${SESSIONS + 100}
# Listener-level per-source limits (if this build has them) would refuse the crowd before any password check.
max_sessions_per_source = ${SESSIONS + 100}
source_connects_per_sec = 100000
source_connects_burst = 100000
`,
);
const proc = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, "--config", `${dir}/config.toml`],
  stdout: "null",
  stderr: "piped",
}).spawn();
const stderr = new Response(proc.stderr).text();
let exitMs: number | null = null;
const result: Record<string, unknown> = { sessions: SESSIONS, sources: SOURCES };
try {
  // Wait for the listener.
  for (let i = 0;; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      if (i > 200) throw new Error("server did not start");
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  let stop = false;
  let guesses = 0;
  let refused = 0;
  const guessers = Array.from({ length: SESSIONS }, async (_, s) => {
    const c = new Line(port, SOURCES === 1 ? "127.0.0.2" : `127.0.0.${10 + (s % SOURCES)}`);
    try {
      if ((await c.line()) === null) return;
      for (let i = 0; !stop; i++) {
        const r = await c.command(`g${i}`, `LOGIN alice wrong${s}x${i}`);
        if (r === null) return;
        guesses++;
        if (/UNAVAILABLE/.test(r)) refused++;
      }
    } finally {
      if (stop) c.close();
    }
  });
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const latencies: number[] = [];
  for (let i = 0; i < LOGINS; i++) {
    const t0 = performance.now();
    const c = new Line(port, "127.0.0.3");
    const timer = setTimeout(() => c.close(), LOGIN_LIMIT_MS);
    await c.line();
    const r = await c.command("a1", 'LOGIN alice "right horse battery"');
    clearTimeout(timer);
    const ms = performance.now() - t0;
    latencies.push(r?.startsWith("a1 OK") ? Math.round(ms) : -1);
    c.close();
  }
  result.realLoginMs = latencies;
  result.guessesDuringRun = guesses;
  result.guessesRefusedUnavailable = refused;
  // SIGTERM with every guesser still connected and checks pending.
  const t0 = performance.now();
  proc.kill("SIGTERM");
  const st = await Promise.race([proc.status, new Promise<null>((r) => setTimeout(() => r(null), 90_000))]);
  exitMs = Math.round(performance.now() - t0);
  result.sigtermExitMs = st === null ? ">90000" : exitMs;
  stop = true;
  await Promise.allSettled(guessers);
} finally {
  if (exitMs === null) {
    try {
      proc.kill("SIGKILL");
    } catch {
      // gone
    }
  }
  await proc.status;
  const err = await stderr;
  result.serverWarnings = err.split("\n").filter((l) => l.trim() !== "").length;
  await Deno.remove(dir, { recursive: true });
}
console.log(JSON.stringify(result));
Deno.exit(0);
