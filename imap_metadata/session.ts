/**
 * @module
 * The standalone IMAP session as a pure reducer:
 * `step(config, state, input) → { state, replies, close, … }`.
 *
 * Inputs are what the parser produced (commands, raw lines, parse errors),
 * the result of a password check the transport ran, or a timeout. Outputs
 * are {@link Reply} data plus requests to the transport: `expectLine` (the
 * next line is an AUTHENTICATE response or IDLE's DONE) and `checkLogin`
 * (verify these credentials, then feed back a `login-result`). No I/O, no
 * clock, no `Deno.*`.
 *
 * The command set is what RFC clients and Delta Chat core need (spec §2.2,
 * §4.1, §4.2): CAPABILITY, NOOP, LOGOUT, LOGIN, AUTHENTICATE PLAIN (with
 * SASL-IR), GETMETADATA, SETMETADATA (server entries are read-only), an empty
 * INBOX for SELECT/EXAMINE/LIST/STATUS/FETCH/SEARCH, IDLE, CLOSE, UNSELECT.
 * Everything else is `BAD`. The tagged OK of a login carries
 * `[CAPABILITY …]` with `METADATA`, so core asks no CAPABILITY.
 *
 * This file holds the reducer: phases, login, continuation lines and the
 * command dispatch; the mailbox and METADATA commands (the empty INBOX,
 * GETMETADATA, SETMETADATA) are `session_mailbox.ts`.
 */

import { STANDALONE_POST_LOGIN, STANDALONE_PRE_LOGIN } from "./capability.ts";
import { capabilityCode, capabilityData, type Reply } from "./encoder.ts";
import type { Command } from "./parser.ts";
import { astringArg, getMetadata, list, select, setMetadata, status } from "./session_mailbox.ts";

export { listMatch } from "./list_pattern.ts";
export { setMetadataReply } from "./session_mailbox.ts";

/** Static settings of every session of a listener. */
export interface SessionConfig {
  /** Server entries, lowercase name → value. */
  entries: ReadonlyMap<string, string>;
  /** `any`: every login succeeds; `users`: the transport checks the password. */
  login: "any" | "users";
  /** Consecutive `BAD` replies after which the session is closed. */
  maxErrors: number;
}

/** RFC 3501 connection states (logout is final). */
export type Phase = "not-authenticated" | "authenticated" | "selected" | "logout";

/** A command waiting for more input from the client or the transport. */
export type Waiting =
  | { kind: "authenticate"; tag: string }
  | { kind: "idle"; tag: string }
  | { kind: "login"; tag: string; command: "LOGIN" | "AUTHENTICATE" };

/** Per-connection state. Treat as immutable: {@link step} returns a new one. */
export interface SessionState {
  /** Connection state. */
  phase: Phase;
  /** Selected mailbox (always INBOX here), when `phase` is `selected`. */
  selected: { name: string; readOnly: boolean } | null;
  /** Command in progress, if any. */
  waiting: Waiting | null;
  /** Consecutive `BAD` replies. */
  errors: number;
}

/** What the transport feeds in. */
export type SessionInput =
  | { type: "command"; command: Command }
  | { type: "line"; text: string }
  | { type: "continue" }
  | { type: "parse-error"; tag: string | null; message: string; fatal: boolean }
  | { type: "login-result"; ok: boolean; unavailable?: boolean }
  | { type: "timeout"; reason: "login" | "idle" };

/** What {@link step} returns. */
export interface SessionOutcome {
  /** The new state. */
  state: SessionState;
  /** Replies to write, in order. */
  replies: Reply[];
  /** Close the connection after writing the replies. */
  close: boolean;
  /** The next client line is raw (call `parser.expectLine()`). */
  expectLine?: boolean;
  /** Check these credentials (never log them), then feed `login-result`. */
  checkLogin?: { user: string; password: string };
}

/** A fresh session. */
export function initialState(): SessionState {
  return { phase: "not-authenticated", selected: null, waiting: null, errors: 0 };
}

/** The greeting: `* OK [CAPABILITY …] …`. */
export function greeting(): Reply {
  return {
    type: "untagged",
    status: "OK",
    code: capabilityCode(STANDALONE_PRE_LOGIN),
    text: "IMAP METADATA discovery ready",
  };
}

/** Reply to a connection over the session cap. */
export function tooManySessions(): Reply {
  return { type: "untagged", status: "BYE", text: "Too many connections, try again later" };
}

/** Capabilities for a phase. */
export function capabilitiesFor(phase: Phase): readonly string[] {
  return phase === "authenticated" || phase === "selected" ? STANDALONE_POST_LOGIN : STANDALONE_PRE_LOGIN;
}

/** Small builder so each handler reads like the protocol. */
export class Out {
  state: SessionState;
  replies: Reply[] = [];
  close = false;
  expectLine = false;
  checkLogin: { user: string; password: string } | undefined;

  constructor(state: SessionState) {
    this.state = { ...state };
  }

  data(text: string): this {
    this.replies.push({ type: "data", text });
    return this;
  }

  ok(tag: string, text: string, code?: string): this {
    this.state.errors = 0;
    this.replies.push(
      code === undefined
        ? { type: "tagged", tag, status: "OK", text }
        : { type: "tagged", tag, status: "OK", code, text },
    );
    return this;
  }

  no(tag: string, text: string, code?: string): this {
    this.state.errors = 0;
    this.replies.push(
      code === undefined
        ? { type: "tagged", tag, status: "NO", text }
        : { type: "tagged", tag, status: "NO", code, text },
    );
    return this;
  }

  bad(tag: string | null, text: string): this {
    this.state.errors++;
    this.replies.push(
      tag === null ? { type: "untagged", status: "BAD", text } : { type: "tagged", tag, status: "BAD", text },
    );
    return this;
  }

  bye(text: string): this {
    this.replies.push({ type: "untagged", status: "BYE", text });
    this.close = true;
    this.state.phase = "logout";
    return this;
  }

  done(cfg: SessionConfig): SessionOutcome {
    if (!this.close && this.state.errors >= cfg.maxErrors) this.bye("Too many invalid commands");
    const o: SessionOutcome = { state: this.state, replies: this.replies, close: this.close };
    if (this.expectLine) o.expectLine = true;
    if (this.checkLogin) o.checkLogin = this.checkLogin;
    return o;
  }
}

/**
 * Advances a session by one input.
 *
 * @example
 * ```ts
 * import { initialState, step } from "./session.ts";
 * const cfg = { entries: new Map([["/shared/vendor/deltachat/irohrelay", "http://127.0.0.1:3340/"]]), login: "any" as const, maxErrors: 10 };
 * const login = step(cfg, initialState(), { type: "command", command: { tag: "A1", name: "LOGIN", args: [{ type: "atom", value: "u" }, { type: "atom", value: "p" }] } });
 * const r = login.replies[0]!;
 * if (r.type !== "tagged" || !r.code?.includes("METADATA")) throw new Error("no METADATA");
 * ```
 */
export function step(cfg: SessionConfig, state: SessionState, input: SessionInput): SessionOutcome {
  const o = new Out(state);
  switch (input.type) {
    case "command":
      if (state.waiting !== null) {
        // The transport feeds no commands while one is in progress; be safe anyway.
        return o.bad(input.command.tag, "Command in progress").done(cfg);
      }
      command(cfg, o, input.command);
      break;
    case "line":
      line(o, input.text);
      finishAnyLogin(cfg, o);
      break;
    case "continue":
      o.replies.push({ type: "continue", text: "Ready for literal data" });
      break;
    case "parse-error": {
      const w = state.waiting;
      if (input.fatal) {
        // The client learns which command failed, then the connection ends: its stream cannot be resynchronised.
        if (input.tag !== null) o.bad(input.tag, input.message);
        o.bye(input.message);
      } else if (w !== null && w.kind !== "login") {
        o.state.waiting = null;
        o.bad(w.tag, input.message);
      } else {
        o.bad(input.tag, input.message);
      }
      break;
    }
    case "login-result": {
      const w = state.waiting;
      if (w === null || w.kind !== "login") break;
      o.state.waiting = null;
      if (input.ok) {
        o.state.phase = "authenticated";
        o.ok(w.tag, `${w.command} completed`, capabilityCode(capabilitiesFor("authenticated")));
      } else if (input.unavailable) {
        // RFC 5530: a temporary failure; the password was not checked.
        o.no(w.tag, "Too many logins in progress, try again later", "UNAVAILABLE");
      } else {
        o.no(w.tag, "Authentication failed", "AUTHENTICATIONFAILED");
      }
      break;
    }
    case "timeout":
      o.bye(input.reason === "login" ? "Login timeout" : "Autologout; idle for too long");
      break;
  }
  return o.done(cfg);
}

function line(o: Out, text: string): void {
  const w = o.state.waiting;
  if (w === null) return;
  o.state.waiting = null;
  if (w.kind === "idle") {
    if (text.toUpperCase() === "DONE") o.ok(w.tag, "IDLE terminated");
    else o.bad(w.tag, "Expected DONE");
    return;
  }
  if (w.kind === "authenticate") {
    if (text === "*") {
      o.bad(w.tag, "Authentication cancelled");
      return;
    }
    saslPlain(o, w.tag, text);
  }
}

/** Decodes a SASL PLAIN response (RFC 4616) and starts the login. */
function saslPlain(o: Out, tag: string, b64: string): void {
  let raw: string;
  try {
    raw = b64 === "=" ? "" : atob(b64.trim());
  } catch {
    o.bad(tag, "Invalid base64");
    return;
  }
  const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  const fields = new TextDecoder().decode(bytes).split("\0");
  if (fields.length !== 3) {
    o.bad(tag, "PLAIN wants authzid NUL authcid NUL password");
    return;
  }
  const [authz, user, password] = fields as [string, string, string];
  if (authz !== "" && authz !== user) {
    o.no(tag, "Cannot act as another user", "AUTHORIZATIONFAILED");
    return;
  }
  startLogin(o, tag, "AUTHENTICATE", user, password);
}

function startLogin(o: Out, tag: string, command: "LOGIN" | "AUTHENTICATE", user: string, password: string): void {
  o.state.waiting = { kind: "login", tag, command };
  o.checkLogin = { user, password };
}

/** Commands allowed before login. */
const ANY_STATE = new Set(["CAPABILITY", "NOOP", "LOGOUT"]);
const NOT_AUTHENTICATED = new Set(["LOGIN", "AUTHENTICATE", "STARTTLS"]);
const AUTHENTICATED = new Set([
  "GETMETADATA",
  "SETMETADATA",
  "SELECT",
  "EXAMINE",
  "LIST",
  "LSUB",
  "STATUS",
  "IDLE",
  "CREATE",
  "DELETE",
  "RENAME",
  "SUBSCRIBE",
  "UNSUBSCRIBE",
  "APPEND",
]);
const SELECTED = new Set(["CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID"]);

function command(cfg: SessionConfig, o: Out, cmd: Command): void {
  const { tag, name, args } = cmd;
  const phase = o.state.phase;
  const authed = phase === "authenticated" || phase === "selected";
  if (NOT_AUTHENTICATED.has(name) && authed) return void o.bad(tag, "Already logged in");
  if (AUTHENTICATED.has(name) && !authed) return void o.bad(tag, "Log in first");
  if (SELECTED.has(name) && phase !== "selected") {
    return void o.bad(tag, authed ? "Select a mailbox first" : "Log in first");
  }
  if (!ANY_STATE.has(name) && !NOT_AUTHENTICATED.has(name) && !AUTHENTICATED.has(name) && !SELECTED.has(name)) {
    return void o.bad(tag, "Unknown command");
  }
  switch (name) {
    case "CAPABILITY":
      o.data(capabilityData(capabilitiesFor(phase))).ok(tag, "CAPABILITY completed");
      return;
    case "NOOP":
      o.ok(tag, "NOOP completed");
      return;
    case "LOGOUT":
      o.bye("Logging out").ok(tag, "LOGOUT completed");
      return;
    case "STARTTLS":
      o.bad(tag, "STARTTLS is not offered: connect with implicit TLS");
      return;
    case "LOGIN": {
      const user = astringArg(args[0]);
      const password = astringArg(args[1]);
      if (user === null || password === null || args.length !== 2) {
        return void o.bad(tag, "LOGIN wants user name and password");
      }
      startLogin(o, tag, "LOGIN", user, password);
      finishAnyLogin(cfg, o);
      return;
    }
    case "AUTHENTICATE": {
      const mech = args[0];
      if (mech === undefined || mech.type !== "atom" || args.length > 2) {
        return void o.bad(tag, "AUTHENTICATE wants a mechanism");
      }
      if (mech.value.toUpperCase() !== "PLAIN") return void o.no(tag, "Unsupported mechanism: only PLAIN", "CANNOT");
      const ir = args[1];
      if (ir !== undefined) {
        if (ir.type !== "atom") return void o.bad(tag, "Invalid initial response");
        saslPlainThenPolicy(cfg, o, tag, ir.value);
        return;
      }
      o.state.waiting = { kind: "authenticate", tag };
      o.replies.push({ type: "continue", text: "" });
      o.expectLine = true;
      return;
    }
    case "GETMETADATA":
      getMetadata(cfg, o, cmd);
      return;
    case "SETMETADATA":
      setMetadata(o, cmd);
      return;
    case "SELECT":
    case "EXAMINE":
      select(o, cmd);
      return;
    case "LIST":
    case "LSUB":
      list(o, cmd);
      return;
    case "STATUS":
      status(o, cmd);
      return;
    case "IDLE":
      o.state.waiting = { kind: "idle", tag };
      o.replies.push({ type: "continue", text: "idling" });
      o.expectLine = true;
      return;
    case "CREATE":
    case "DELETE":
    case "RENAME":
    case "APPEND":
      o.no(tag, "This server stores no mail", "CANNOT");
      return;
    case "SUBSCRIBE":
    case "UNSUBSCRIBE":
    case "CHECK":
    case "EXPUNGE":
      o.ok(tag, `${name} completed`);
      return;
    case "CLOSE":
    case "UNSELECT":
      o.state.phase = "authenticated";
      o.state.selected = null;
      o.ok(tag, `${name} completed`);
      return;
    case "SEARCH":
      o.data("SEARCH").ok(tag, "SEARCH completed");
      return;
    case "FETCH":
    case "STORE":
    case "COPY":
    case "MOVE":
      // The mailbox is empty: nothing to fetch, store, copy or move.
      o.ok(tag, `${name} completed`);
      return;
    case "UID": {
      const sub = args[0]?.type === "atom" ? args[0].value.toUpperCase() : "";
      if (sub === "SEARCH") o.data("SEARCH").ok(tag, "UID SEARCH completed");
      else if (["FETCH", "STORE", "COPY", "MOVE", "EXPUNGE"].includes(sub)) o.ok(tag, `UID ${sub} completed`);
      else o.bad(tag, "Unknown UID command");
      return;
    }
  }
}

function saslPlainThenPolicy(cfg: SessionConfig, o: Out, tag: string, b64: string): void {
  saslPlain(o, tag, b64);
  finishAnyLogin(cfg, o);
}

/** With `login = any` a started login succeeds at once, without the transport. */
function finishAnyLogin(cfg: SessionConfig, o: Out): void {
  const w = o.state.waiting;
  if (cfg.login !== "any" || w === null || w.kind !== "login") return;
  o.checkLogin = undefined;
  o.state.waiting = null;
  o.state.phase = "authenticated";
  o.ok(w.tag, `${w.command} completed`, capabilityCode(capabilitiesFor("authenticated")));
}
