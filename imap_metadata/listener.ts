/**
 * @module
 * The socket side of the IMAP listener: the accept loop with the session
 * cap, and the standalone session loop (read → {@link CommandParser} →
 * {@link step} → write). Proxy sessions are handed to `proxy.ts`.
 *
 * Per session:
 * - admission (`admission/`) before a session exists: over the per-source
 *   limits (`max_sessions_per_source`, `source_connects_per_sec/burst`) the
 *   connection is closed at once; over `max_sessions` (with its reserve for
 *   sources holding few sessions) a plain connection gets `* BYE`, closed
 *   without waiting on the peer; IMAPS connections are refused before TLS;
 * - login and idle deadlines from {@link SessionTimer}; a timeout writes
 *   `* BYE` and closes;
 * - password checks go through {@link PasswordChecks} (bounded queue,
 *   per-source back-off, fail2ban line), and a failed login waits
 *   `failed_login_delay` before the `NO`;
 * - a broken or hostile client only ever ends its own session: every error
 *   is caught per connection.
 *
 * Credentials are never logged: only command names, at debug level.
 */

import type { AcceptedConn, Acceptor, RefusalReason } from "../admission/mod.ts";
import type { ImapConfig } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";
import { type ByteConn, closeQuietly, SessionTimer, sleep, within, Writer } from "./conn.ts";
import { encodeReplies, type Reply } from "./encoder.ts";
import type { ImapMetrics } from "./metrics.ts";
import { CommandParser, type ParseEvent } from "./parser.ts";
import type { PasswordChecks } from "./password_checks.ts";
import {
  greeting,
  initialState,
  type SessionConfig,
  type SessionInput,
  type SessionState,
  step,
  tooManySessions,
} from "./session.ts";

/** Read buffer per session, bytes: big enough for core's commands in one read, small for idle sessions. */
const READ_BUFFER = 16 * 1024;
/** Consecutive BAD replies before a standalone session is closed. */
export const MAX_ERRORS = 20;
/** How long the BYE to a refused connection may take before we just close, ms. */
const REFUSE_WRITE_MS = 1000;

/** What every session of the service shares. */
export interface ListenerContext {
  /** `[imap]`. */
  config: ImapConfig;
  /** Component logger. */
  log: Logger;
  /** Counters. */
  metrics: ImapMetrics;
  /** Serves one accepted connection (standalone or proxy); resolves when it ends. */
  serve(conn: AcceptedConn, remote: string, signal: AbortSignal): Promise<void>;
}

/** Open sessions of a service, so `close()` can end them. */
export class SessionSet {
  readonly #open = new Map<ByteConn, { abort: AbortController; done: Promise<void> }>();

  /** Number of open sessions. */
  get size(): number {
    return this.#open.size;
  }

  /** Registers a running session. */
  add(conn: ByteConn, abort: AbortController, done: Promise<void>): void {
    this.#open.set(conn, { abort, done });
    done.finally(() => this.#open.delete(conn));
  }

  /** Aborts and closes every session; resolves when all have ended. */
  async closeAll(): Promise<void> {
    const all = [...this.#open.entries()];
    for (const [conn, s] of all) {
      s.abort.abort();
      closeQuietly(conn);
    }
    await Promise.allSettled(all.map(([, s]) => s.done));
  }
}

/**
 * What the admission gate does with a refused plain connection: over the
 * global cap, a short `* BYE` (tracked in `sessions` so shutdown ends it);
 * over a per-source limit, a plain close (cheapest for a flood).
 */
export function refuser(ctx: ListenerContext, sessions: SessionSet): (conn: Deno.Conn, reason: RefusalReason) => void {
  return (conn, reason) => {
    if (reason !== "global") {
      closeQuietly(conn);
      return;
    }
    ctx.metrics.c.sessionsRefused++;
    const abort = new AbortController();
    sessions.add(conn, abort, refuse(conn, abort.signal));
  };
}

/**
 * Accepts admitted connections until the listener closes.
 * @returns when the listener is closed
 */
export async function acceptLoop(listener: Acceptor, ctx: ListenerContext, sessions: SessionSet): Promise<void> {
  for (;;) {
    let admitted;
    try {
      admitted = await listener.accept();
    } catch (e) {
      if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
      ctx.log.warn(`accept failed: ${(e as Error).message}`);
      // Out of descriptors and the like: back off instead of spinning.
      await sleep(100);
      continue;
    }
    const { conn, remote, ticket } = admitted;
    try {
      (conn as ByteConn & { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    } catch {
      // not TCP, or already gone
    }
    const abort = new AbortController();
    // The global cap (max_sessions) was applied by the admission gate, which counts served sessions only.
    ctx.metrics.c.sessions++;
    ctx.metrics.active++;
    const done = ctx.serve(conn, remote, abort.signal)
      .catch((e) => ctx.log.error(`session ${remote}: ${(e as Error).message}`))
      .finally(() => {
        ctx.metrics.active--;
        closeQuietly(conn);
        ticket.release();
      });
    sessions.add(conn, abort, done);
  }
}

/** Says BYE to a connection over the cap, without waiting long for a slow peer. */
async function refuse(conn: ByteConn, signal: AbortSignal): Promise<void> {
  await within(new Writer(conn, signal).write(encodeReplies([tooManySessions()])), REFUSE_WRITE_MS);
  closeQuietly(conn);
}

function toInput(ev: Exclude<ParseEvent, { type: "need-more" }>): SessionInput {
  switch (ev.type) {
    case "command":
      return { type: "command", command: ev.command };
    case "line":
      return { type: "line", text: ev.text };
    case "continue":
      return { type: "continue" };
    case "error":
      return { type: "parse-error", tag: ev.tag, message: ev.message, fatal: ev.fatal };
  }
}

function countReplies(m: ImapMetrics, replies: readonly Reply[]): void {
  for (const r of replies) if ((r.type === "tagged" || r.type === "untagged") && r.status === "BAD") m.c.badCommands++;
}

/**
 * Serves one standalone session until LOGOUT, a timeout, a fatal error, EOF
 * or `signal`.
 */
export async function serveStandalone(
  conn: AcceptedConn,
  remote: string,
  signal: AbortSignal,
  ctx: ListenerContext & { session: SessionConfig; passwords: PasswordChecks | null },
): Promise<void> {
  const { config, metrics: m, log } = ctx;
  const limits = config.limits;
  const writer = new Writer(conn, signal);
  const ip = conn.remoteAddr.transport === "tcp" ? conn.remoteAddr.hostname : "?";
  const parser = new CommandParser({ maxLineBytes: limits.maxLineBytes, maxLiteralBytes: limits.maxLiteralBytes });
  let state: SessionState = initialState();
  let closed = false;
  // Fires when this session ends for any reason (timeout, error, shutdown): a queued password check is dropped then.
  const ended = new AbortController();
  const finish = () => {
    if (closed) return;
    closed = true;
    timer.stop();
    closeQuietly(conn);
    ended.abort();
  };
  const timer = new SessionTimer(limits, (reason) => {
    m.c.timeouts++;
    m.disconnects[reason === "login" ? "login_timeout" : "idle_timeout"]++;
    log.debug(`session ${remote}: ${reason} timeout`);
    const out = step(ctx.session, state, { type: "timeout", reason });
    state = out.state;
    // Best effort: a peer that does not read gets closed when the write cannot finish quickly.
    within(writer.write(encodeReplies(out.replies)), REFUSE_WRITE_MS).finally(finish);
  });
  signal.addEventListener("abort", finish, { once: true });

  /** Applies one input; returns false when the session is over. */
  const apply = async (input: SessionInput): Promise<boolean> => {
    let out = step(ctx.session, state, input);
    state = out.state;
    countReplies(m, out.replies);
    if (out.close && input.type === "parse-error" && input.fatal) {
      m.disconnects[/too long/i.test(input.message) ? "line_too_long" : "literal_too_large"]++;
    } else if (out.close && out.state.errors >= ctx.session.maxErrors) m.disconnects.too_many_errors++;
    await writer.write(encodeReplies(out.replies));
    if (out.checkLogin) {
      const { user, password } = out.checkLogin;
      const result = ctx.passwords === null ? "failed" : await ctx.passwords.check(user, password, ip, ended.signal);
      if (closed || result === "aborted") return false;
      if (result === "failed") {
        m.c.loginsFailed++;
        await sleep(limits.failedLoginDelayMs, signal);
        if (closed) return false;
      }
      out = step(ctx.session, state, {
        type: "login-result",
        ok: result === "ok",
        ...(result === "unavailable" ? { unavailable: true } : {}),
      });
      state = out.state;
      await writer.write(encodeReplies(out.replies));
    }
    if (out.expectLine) parser.expectLine();
    return !out.close && !writer.failed && !closed;
  };

  let wasAuthenticated = false;
  try {
    await writer.write(encodeReplies([greeting()]));
    const buf = new Uint8Array(READ_BUFFER);
    for (;;) {
      if (closed) return;
      const n = await conn.read(buf);
      if (n === null) return;
      timer.activity();
      parser.push(buf.subarray(0, n));
      for (;;) {
        const ev = parser.next();
        if (ev.type === "need-more") break;
        if (ev.type === "command") {
          m.c.commands++;
          if (ev.command.name === "GETMETADATA") m.c.getmetadata++;
          log.debug(`session ${remote}: ${ev.command.name}`);
        }
        if (ev.type === "error" && /too (long|large)/.test(ev.message)) m.c.limitErrors++;
        const keep = await apply(toInput(ev));
        const authed = state.phase === "authenticated" || state.phase === "selected";
        if (authed && !wasAuthenticated) {
          wasAuthenticated = true;
          m.c.loginsOk++;
          timer.authenticated();
        }
        if (!keep) {
          await writer.idle();
          return;
        }
      }
    }
  } catch (e) {
    if (!closed) {
      m.c.sessionErrors++;
      log.debug(`session ${remote}: ${(e as Error).message}`);
    }
  } finally {
    signal.removeEventListener("abort", finish);
    finish();
  }
}
