/**
 * @module
 * Pure core of proxy mode (spec §4.4): client bytes and upstream bytes in,
 * {@link ProxyAction}s out (bytes for either side, close, metric events).
 * `proxy.ts` owns the sockets; nothing here does I/O or reads a clock.
 *
 * Client → upstream:
 * - commands are framed line by line; literals (`{n}`, `{n+}`) are counted
 *   and relayed byte for byte without buffering them, so APPEND of a large
 *   message streams; after a synchronizing `{n}` we hold the client's bytes
 *   until the upstream's `+` (or its tagged refusal, which cancels the
 *   literal);
 * - while AUTHENTICATE or IDLE runs, client lines are continuation data
 *   (SASL responses, DONE) and go through untouched;
 * - GETMETADATA, SETMETADATA, COMPRESS and STARTTLS are intercepted: read
 *   with our own {@link CommandParser} (we send the `+` for their literals)
 *   and answered by `proxy_answer.ts`. GETMETADATA entries we own are
 *   answered locally; the rest (e.g. `/private/…`, other mailboxes, unknown
 *   `/shared` names) is re-encoded and forwarded when the upstream has
 *   METADATA.
 *
 * Upstream → client:
 * - responses are framed the same way (FETCH literals pass untouched); the
 *   first line of each response is inspected: capability lists are
 *   rewritten (see `capability.ts`), tagged replies complete commands;
 * - tags are tracked in order, so replies we make ourselves are written
 *   only at a response boundary and after every earlier forwarded command
 *   has completed: they never split an upstream response, and pipelined
 *   commands keep their order.
 *
 * Login is the upstream's verdict: a tagged OK to a forwarded LOGIN or
 * AUTHENTICATE (or a PREAUTH greeting) authenticates the session; a failed
 * one is delayed by `failed_login_delay` before the client sees it.
 * Nothing here logs, so credentials cannot leak through it.
 *
 * Over ~450 lines on purpose: this is one state machine. Both directions
 * share the tag tracking, the reply queue (`proxy_queue.ts`), the login
 * tags and each other's modes (the upstream's `+` releases a client literal,
 * its tagged reply ends AUTHENTICATE/IDLE continuation or cancels a held
 * literal), so splitting the client and upstream halves into files would
 * only turn that private state into an interface between them. What has a
 * seam is outside: the answers to intercepted commands and the queue.
 */

import { rewriteCapabilityLine } from "./capability.ts";
import { concat, encodeReplies, type Reply } from "./encoder.ts";
import { InputBuffer } from "./input_buffer.ts";
import { CommandParser, literalAtEnd } from "./parser.ts";
import { answerIntercepted, type InterceptContext } from "./proxy_answer.ts";
import { type QueueEntry, ReplyQueue } from "./proxy_queue.ts";

/** Settings of every proxy session of a listener. */
export interface ProxySessionConfig {
  /** Server entries we answer, lowercase name → value. */
  entries: ReadonlyMap<string, string>;
  /** Longest client line, bytes. */
  maxLineBytes: number;
  /** Largest literal in an intercepted command, bytes. */
  maxLiteralBytes: number;
  /** Largest literal relayed to the upstream (APPEND), bytes. */
  maxProxyLiteralBytes: number;
  /** Delay before a failed login reaches the client, ms. */
  failedLoginDelayMs: number;
  /**
   * Most bytes held for commands the upstream has not answered yet (our own
   * replies waiting their turn, intercepted commands, forwarded tags); over
   * it the session ends with `* BYE` (default 1 MiB).
   */
  maxPendingReplyBytes?: number;
}

/** Default of {@link ProxySessionConfig.maxPendingReplyBytes}. */
export const DEFAULT_MAX_PENDING_REPLY_BYTES = 1024 * 1024;

/** Why the session asked to be closed, for `imap_disconnects_by_reason_total`. */
export type ProxyCloseCode = "reply_queue_full" | "line_too_long" | "literal_too_large" | "protocol_error";

/** Metric-worthy things that happened. */
export type ProxyEvent = "intercepted" | "getmetadata" | "login-ok" | "login-failed" | "bad" | "limit";

/** What the transport must do, in order. */
export type ProxyAction =
  | { type: "to-upstream"; bytes: Uint8Array }
  | { type: "to-client"; bytes: Uint8Array; delayMs?: number }
  | { type: "close"; reason: string; code: ProxyCloseCode }
  | { type: "event"; event: ProxyEvent };

/** Commands we answer (or rewrite) ourselves. */
const INTERCEPTED = new Set(["GETMETADATA", "SETMETADATA", "COMPRESS", "STARTTLS"]);
/** Commands after which client lines are continuation data until the tagged reply. */
const CONTINUED = new Set(["AUTHENTICATE", "IDLE"]);
/** An upstream line longer than this is streamed instead of buffered; capability lines are far shorter. */
const INSPECT_MAX = 8 * 1024;
/** Bytes kept from a streamed line's end to spot a literal announcement. */
const TAIL = 24;

const LF = 0x0a;
const CR = 0x0d;
const enc = new TextEncoder();
const dec = new TextDecoder();
const EMPTY = new Uint8Array(0);

/** How the current upstream response started. */
type ResponseInfo =
  | { kind: "tagged"; tag: string; ok: boolean }
  | { kind: "continuation" }
  | { kind: "untagged"; preauth: boolean };

type ClientMode =
  | { kind: "line"; start: boolean }
  | { kind: "literal"; remaining: number }
  | { kind: "await-go"; size: number; tag: string | null }
  | { kind: "intercept"; parser: CommandParser; tag: string }
  | { kind: "skip-line"; tail: Uint8Array };

type UpstreamMode =
  | { kind: "line"; start: boolean; info: ResponseInfo | null }
  | { kind: "literal"; remaining: number; info: ResponseInfo | null }
  | { kind: "stream"; tail: Uint8Array; info: ResponseInfo | null };

function closeCodeOf(parserMessage: string): ProxyCloseCode {
  if (/too long/i.test(parserMessage)) return "line_too_long";
  return /too large/i.test(parserMessage) ? "literal_too_large" : "protocol_error";
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  if (b.length === 0) return a;
  return concat([a, b]);
}

function stripEol(line: Uint8Array): Uint8Array {
  let end = line.length;
  if (end > 0 && line[end - 1] === LF) end--;
  if (end > 0 && line[end - 1] === CR) end--;
  return line.subarray(0, end);
}

/** `tag SP name [SP …]` at the start of a client line, or null. */
function commandHead(text: Uint8Array): { tag: string; name: string } | null {
  const s = dec.decode(text.subarray(0, Math.min(text.length, 128)));
  const m = /^([^\s(){%*"\\+]+) +([A-Za-z][A-Za-z0-9.-]*)(?= |$)/.exec(s);
  return m ? { tag: m[1]!, name: m[2]!.toUpperCase() } : null;
}

/** Last `TAIL` bytes of `a` followed by `b`. */
function tailOf(a: Uint8Array, b: Uint8Array): Uint8Array {
  const j = join(a, b);
  return j.subarray(Math.max(0, j.length - TAIL)).slice();
}

/**
 * One proxied session. Feed it bytes from each side; send the returned
 * actions in order.
 *
 * @example
 * ```ts
 * import { ProxySession } from "./proxy_session.ts";
 * const p = new ProxySession({ entries: new Map([["/shared/vendor/deltachat/irohrelay", "http://127.0.0.1:3340/"]]),
 *   maxLineBytes: 8192, maxLiteralBytes: 8192, maxProxyLiteralBytes: 1 << 20, failedLoginDelayMs: 0 });
 * const a = p.fromUpstream(new TextEncoder().encode("* OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hi\r\n"));
 * const line = new TextDecoder().decode((a[0] as { bytes: Uint8Array }).bytes);
 * if (line !== "* OK [CAPABILITY IMAP4rev1 METADATA] hi\r\n") throw new Error(line);
 * ```
 */
export class ProxySession {
  readonly #cfg: ProxySessionConfig;
  #out: ProxyAction[] = [];
  #closed = false;

  // Client side.
  readonly #cin = new InputBuffer();
  #cscan = 0;
  #cmode: ClientMode = { kind: "line", start: true };
  /** Tag of the forwarded command whose lines are in flight (for await-go). */
  #ctag: string | null = null;
  /** AUTHENTICATE/IDLE in progress: client lines are raw continuation data. */
  #contTag: string | null = null;

  // Upstream side.
  readonly #uin = new InputBuffer();
  #uscan = 0;
  #umode: UpstreamMode = { kind: "line", start: true, info: null };
  #greeted = false;

  // Shared.
  #queue: ReplyQueue;
  #loginTags = new Set<string>();
  #authenticated = false;
  #upCaps = new Set<string>();

  /** @param cfg entries and limits */
  constructor(cfg: ProxySessionConfig) {
    this.#cfg = cfg;
    this.#queue = new ReplyQueue(cfg.maxPendingReplyBytes ?? DEFAULT_MAX_PENDING_REPLY_BYTES);
  }

  /** True once the upstream accepted a login (or greeted with PREAUTH). */
  get authenticated(): boolean {
    return this.#authenticated;
  }

  /** The upstream's capabilities as last seen (upper-case). */
  get upstreamCapabilities(): ReadonlySet<string> {
    return this.#upCaps;
  }

  /** Unconsumed client bytes, a view valid until the next push. */
  get #cbuf(): Uint8Array {
    return this.#cin.view();
  }

  /** Unconsumed upstream bytes, a view valid until the next push. */
  get #ubuf(): Uint8Array {
    return this.#uin.view();
  }

  /** Bytes the client sent. */
  fromClient(chunk: Uint8Array): ProxyAction[] {
    if (!this.#closed) {
      this.#cin.push(chunk);
      this.#pumpClient();
      if (!this.#closed && this.#cmode.kind === "await-go" && this.#cbuf.length > this.#cfg.maxLineBytes) {
        this.#closeWith("Data sent before the literal was accepted", "protocol_error");
      }
    }
    return this.#take();
  }

  /** Bytes the upstream sent. */
  fromUpstream(chunk: Uint8Array): ProxyAction[] {
    if (!this.#closed) {
      this.#uin.push(chunk);
      this.#pumpUpstream();
    }
    return this.#take();
  }

  #take(): ProxyAction[] {
    const out = this.#out;
    this.#out = [];
    return out;
  }

  // Both copy: `bytes` is often a view of an input buffer, which a later push may overwrite while the write is pending.
  #toUpstream(bytes: Uint8Array): void {
    if (bytes.length > 0) this.#out.push({ type: "to-upstream", bytes: bytes.slice() });
  }

  #toClient(bytes: Uint8Array, delayMs = 0): void {
    if (bytes.length === 0) return;
    bytes = bytes.slice();
    this.#out.push(delayMs > 0 ? { type: "to-client", bytes, delayMs } : { type: "to-client", bytes });
  }

  #event(event: ProxyEvent): void {
    this.#out.push({ type: "event", event });
  }

  #closeWith(text: string, code: ProxyCloseCode): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#toClient(enc.encode(`* BYE ${text}\r\n`));
    this.#out.push({ type: "close", reason: text, code });
  }

  /** Bytes copied into both input buffers so far: linear in what arrived (for tests of the cost). */
  get inputBytesCopied(): number {
    return this.#cin.copied + this.#uin.copied;
  }

  /** Bytes held in the reply queue, as `proxy_queue.ts` `entrySize` counts them. */
  get pendingBytes(): number {
    return this.#queue.bytes;
  }

  /** Adds entries at the queue's tail (or head); ends the session when the queue grows past its cap. */
  #enqueue(entries: QueueEntry[], atHead = false): void {
    // A client pipelining commands we answer while the upstream sits on an earlier one: it is not reading in step.
    if (!this.#queue.add(entries, atHead)) this.#closeWith("Too many commands waiting for replies", "reply_queue_full");
  }

  /** Queues our own replies behind earlier commands. */
  #local(replies: Reply[]): void {
    this.#enqueue([{ kind: "local", bytes: encodeReplies(replies) }]);
  }

  #bad(tag: string | null, text: string): void {
    this.#event("bad");
    this.#local([
      tag === null ? { type: "untagged", status: "BAD", text } : { type: "tagged", tag, status: "BAD", text },
    ]);
  }

  // ---- client side -------------------------------------------------------

  #consumeClient(n: number): void {
    this.#cin.consume(n);
    this.#cscan = 0;
  }

  #pumpClient(): void {
    while (!this.#closed) {
      const m = this.#cmode;
      if (m.kind === "await-go") break;
      if (m.kind === "literal") {
        if (m.remaining === 0) {
          this.#cmode = { kind: "line", start: false };
          continue;
        }
        if (this.#cbuf.length === 0) break;
        const n = Math.min(m.remaining, this.#cbuf.length);
        this.#toUpstream(this.#cbuf.subarray(0, n));
        this.#consumeClient(n);
        m.remaining -= n;
        if (m.remaining === 0) this.#cmode = { kind: "line", start: false };
        continue;
      }
      if (m.kind === "intercept") {
        if (!this.#pumpIntercept(m)) break;
        continue;
      }
      if (m.kind === "skip-line") {
        const lf = this.#cbuf.indexOf(LF);
        if (lf < 0) {
          m.tail = tailOf(m.tail, this.#cbuf);
          this.#consumeClient(this.#cbuf.length);
          break;
        }
        const ann = literalAtEnd(stripEol(tailOf(m.tail, this.#cbuf.subarray(0, lf + 1))));
        this.#consumeClient(lf + 1);
        if (ann !== null && !ann.sync) {
          this.#closeWith("Line too long", "line_too_long");
          break;
        }
        this.#cmode = { kind: "line", start: true };
        continue;
      }
      if (!this.#clientLine(m)) break;
    }
    this.#flush();
  }

  /** Handles one client line in line mode; false when more bytes are needed. */
  #clientLine(m: { kind: "line"; start: boolean }): boolean {
    const lf = this.#cbuf.indexOf(LF, this.#cscan);
    const max = this.#cfg.maxLineBytes;
    if (lf < 0) {
      this.#cscan = this.#cbuf.length;
      if (this.#cbuf.length > max + 1) this.#overlong(m.start, this.#cbuf, false);
      return false;
    }
    const line = this.#cbuf.subarray(0, lf + 1);
    const text = stripEol(line);
    if (text.length > max) {
      this.#overlong(m.start, line, true);
      return true;
    }
    this.#consumeClient(lf + 1);
    if (this.#contTag !== null) {
      // SASL response or DONE: not a command.
      this.#toUpstream(line);
      return true;
    }
    let head: { tag: string; name: string } | null = null;
    if (m.start) {
      head = commandHead(text);
      this.#ctag = head?.tag ?? null;
      if (head !== null && INTERCEPTED.has(head.name)) {
        const parser = new CommandParser({ maxLineBytes: max, maxLiteralBytes: this.#cfg.maxLiteralBytes });
        parser.push(line);
        this.#cmode = { kind: "intercept", parser, tag: head.tag };
        this.#event("intercepted");
        return true;
      }
      if (head !== null) {
        this.#enqueue([{ kind: "forwarded", tag: head.tag }]);
        if (head.name === "LOGIN" || head.name === "AUTHENTICATE") this.#loginTags.add(head.tag);
        if (CONTINUED.has(head.name)) this.#contTag = head.tag;
      }
    }
    const ann = literalAtEnd(text);
    if (ann === null) {
      this.#toUpstream(line);
      this.#cmode = { kind: "line", start: true };
      return true;
    }
    if (ann.size > this.#cfg.maxProxyLiteralBytes) {
      this.#event("limit");
      if (m.start && ann.sync && head !== null) {
        // Nothing of this command reached the upstream, and the client waits for "+": refuse it here.
        this.#unqueue(head.tag);
        this.#loginTags.delete(head.tag);
        if (this.#contTag === head.tag) this.#contTag = null;
        this.#bad(head.tag, `Literal too large: at most ${this.#cfg.maxProxyLiteralBytes} bytes`);
        this.#cmode = { kind: "line", start: true };
        return true;
      }
      this.#closeWith("Literal too large", "literal_too_large");
      return false;
    }
    this.#toUpstream(line);
    this.#cmode = ann.sync
      ? { kind: "await-go", size: ann.size, tag: this.#ctag }
      : { kind: "literal", remaining: ann.size };
    return true;
  }

  /** A line over the limit: refuse it if nothing of its command was forwarded, else give up. */
  #overlong(start: boolean, seen: Uint8Array, complete: boolean): void {
    this.#event("limit");
    if (!start || this.#contTag !== null) {
      this.#closeWith("Line too long", "line_too_long");
      return;
    }
    const head = commandHead(seen);
    this.#bad(head?.tag ?? null, "Line too long");
    if (complete) {
      const ann = literalAtEnd(stripEol(seen));
      this.#consumeClient(seen.length);
      if (ann !== null && !ann.sync) this.#closeWith("Line too long", "line_too_long");
      return;
    }
    this.#cmode = { kind: "skip-line", tail: tailOf(EMPTY, this.#cbuf) };
    this.#consumeClient(this.#cbuf.length);
  }

  /** Runs the intercept parser; false when it needs more bytes. */
  #pumpIntercept(m: { kind: "intercept"; parser: CommandParser; tag: string }): boolean {
    for (;;) {
      const ev = m.parser.next();
      switch (ev.type) {
        case "need-more": {
          // Feed it one line at a time (literal bytes included): handing it the whole buffer, to take the rest
          // back after each command, re-copied a pipelined read once per intercepted command.
          if (this.#cbuf.length === 0) return false;
          const lf = this.#cbuf.indexOf(LF);
          const n = lf < 0 ? this.#cbuf.length : lf + 1;
          m.parser.push(this.#cbuf.subarray(0, n));
          this.#consumeClient(n);
          continue;
        }
        case "continue":
          this.#local([{ type: "continue", text: "Ready for literal data" }]);
          this.#flush();
          continue;
        case "line":
          continue; // never requested
        case "error":
          if (/too (long|large)/.test(ev.message)) this.#event("limit");
          if (ev.fatal || !m.parser.idle) {
            this.#closeWith(ev.message, closeCodeOf(ev.message));
            return false;
          }
          this.#bad(ev.tag ?? m.tag, ev.message);
          this.#cin.prepend(m.parser.takeBuffered());
          this.#cmode = { kind: "line", start: true };
          return true;
        case "command":
          this.#cin.prepend(m.parser.takeBuffered());
          this.#cmode = { kind: "line", start: true };
          this.#enqueue([{ kind: "deferred", command: ev.command }]);
          return true;
      }
    }
  }

  #unqueue(tag: string): void {
    this.#queue.removeForwarded(tag);
  }

  // ---- our answers -------------------------------------------------------

  /** Writes queued local replies and runs deferred commands that reached the head. */
  #flush(): void {
    const um = this.#umode;
    if (this.#closed || !this.#greeted || um.kind !== "line" || !um.start) return;
    for (let e = this.#queue.head(); e !== undefined; e = this.#queue.head()) {
      if (e.kind === "forwarded") return;
      this.#queue.shift();
      if (e.kind === "local") {
        this.#toClient(e.bytes);
      } else {
        this.#enqueue(answerIntercepted(e.command, this.#interceptContext()), true);
      }
    }
  }

  /** What the intercepted-command answers see of this session. */
  #interceptContext(): InterceptContext {
    return {
      entries: this.#cfg.entries,
      authenticated: this.#authenticated,
      upstreamCaps: this.#upCaps,
      event: (e) => this.#event(e),
      toUpstream: (b) => this.#toUpstream(b),
    };
  }

  // ---- upstream side -----------------------------------------------------

  #consumeUpstream(n: number): void {
    this.#uin.consume(n);
    this.#uscan = 0;
  }

  #pumpUpstream(): void {
    while (!this.#closed) {
      const m = this.#umode;
      if (m.kind === "literal") {
        if (this.#ubuf.length === 0) break;
        const n = Math.min(m.remaining, this.#ubuf.length);
        this.#toClient(this.#ubuf.subarray(0, n));
        this.#consumeUpstream(n);
        m.remaining -= n;
        if (m.remaining === 0) this.#umode = { kind: "line", start: false, info: m.info };
        continue;
      }
      if (m.kind === "stream") {
        const lf = this.#ubuf.indexOf(LF);
        if (lf < 0) {
          if (this.#ubuf.length === 0) break;
          m.tail = tailOf(m.tail, this.#ubuf);
          this.#toClient(this.#ubuf);
          this.#consumeUpstream(this.#ubuf.length);
          break;
        }
        const rest = this.#ubuf.subarray(0, lf + 1);
        const ann = literalAtEnd(stripEol(tailOf(m.tail, rest)));
        this.#toClient(rest);
        this.#consumeUpstream(lf + 1);
        this.#lineDone(ann?.size ?? null, m.info);
        continue;
      }
      const lf = this.#ubuf.indexOf(LF, this.#uscan);
      if (lf < 0) {
        this.#uscan = this.#ubuf.length;
        if (this.#ubuf.length > INSPECT_MAX) {
          // Too long to be a capability or status line: classify by its start and stream the rest.
          const info = m.start ? this.#classify(this.#ubuf) : m.info;
          this.#umode = { kind: "stream", tail: tailOf(EMPTY, this.#ubuf), info };
          this.#toClient(this.#ubuf);
          this.#consumeUpstream(this.#ubuf.length);
          continue;
        }
        break;
      }
      const line = this.#ubuf.subarray(0, lf + 1);
      this.#consumeUpstream(lf + 1);
      const text = stripEol(line);
      let info = m.info;
      if (m.start) {
        info = this.#classify(text);
        this.#responseStart(line, text, info);
      } else {
        this.#toClient(line);
      }
      this.#lineDone(literalAtEnd(text)?.size ?? null, info);
    }
    this.#flush();
  }

  /** After a response line: a literal follows, or the response is complete. */
  #lineDone(literal: number | null, info: ResponseInfo | null): void {
    if (literal !== null) {
      this.#umode = literal > 0 ? { kind: "literal", remaining: literal, info } : { kind: "line", start: false, info };
      return;
    }
    this.#umode = { kind: "line", start: true, info: null };
    this.#responseEnd(info);
    // A boundary: our queued replies may go now, before the next upstream response.
    this.#flush();
  }

  #classify(text: Uint8Array): ResponseInfo {
    const s = dec.decode(text.subarray(0, Math.min(text.length, 256)));
    if (s.startsWith("+")) return { kind: "continuation" };
    if (s.startsWith("*")) return { kind: "untagged", preauth: /^\* +PREAUTH\b/i.test(s) };
    const m = /^([^ ]+) +(OK|NO|BAD)\b/i.exec(s);
    if (m) return { kind: "tagged", tag: m[1]!, ok: m[2]!.toUpperCase() === "OK" };
    return { kind: "untagged", preauth: false };
  }

  /** First line of a response: rewrite capability lists, delay a failed login. */
  #responseStart(line: Uint8Array, text: Uint8Array, info: ResponseInfo): void {
    let bytes = line;
    const s = dec.decode(text);
    if (/CAPABILITY/i.test(s)) {
      const r = rewriteCapabilityLine(s);
      if (r !== null) {
        this.#upCaps = new Set(r.upstream.map((c) => c.toUpperCase()));
        bytes = enc.encode(r.line + "\r\n");
      }
    }
    const failedLogin = info.kind === "tagged" && !info.ok && this.#loginTags.has(info.tag);
    this.#toClient(bytes, failedLogin ? this.#cfg.failedLoginDelayMs : 0);
  }

  /** A complete upstream response: advance tag tracking and the client side. */
  #responseEnd(info: ResponseInfo | null): void {
    if (!this.#greeted) this.#greeted = true;
    if (info === null) return;
    if (info.kind === "untagged") {
      if (info.preauth && !this.#authenticated) {
        this.#authenticated = true;
        this.#event("login-ok");
      }
      return;
    }
    const cm = this.#cmode;
    if (info.kind === "continuation") {
      if (cm.kind === "await-go") {
        this.#cmode = { kind: "literal", remaining: cm.size };
        this.#pumpClient();
      }
      return;
    }
    this.#unqueue(info.tag);
    if (this.#loginTags.delete(info.tag)) {
      if (info.ok) {
        this.#authenticated = true;
        this.#event("login-ok");
      } else {
        this.#event("login-failed");
      }
    }
    if (this.#contTag === info.tag) this.#contTag = null;
    if (cm.kind === "await-go" && cm.tag === info.tag) {
      // The upstream refused the command instead of asking for the literal: the client will not send it.
      this.#cmode = { kind: "line", start: true };
      this.#pumpClient();
    }
  }
}
