/**
 * @module
 * Pure push parser for IMAP client commands (RFC 3501 §9, RFC 9051 §9):
 * bytes in, events out. No sockets, timers or `Deno.*`.
 *
 * Flow:
 * - {@link CommandParser.push} appends what the socket delivered;
 * - {@link CommandParser.next} returns one event at a time: a complete
 *   {@link Command}, `continue` (a synchronizing literal `{n}` was accepted:
 *   the transport answers `+ `), a raw `line` (after
 *   {@link CommandParser.expectLine}, for AUTHENTICATE responses and IDLE's
 *   DONE), an `error`, or `need-more`.
 *
 * Limits are checked before anything is allocated, and literal memory grows
 * with the bytes that arrive, never with the size announced. A line longer than
 * `maxLineBytes` or a literal larger than `maxLiteralBytes` (summed over one
 * command) is an `error`. After an error the parser resynchronises at the
 * next line when it can (`fatal: false`); when the client is already sending
 * a non-synchronizing literal `{n+}` we cannot afford to read, it reports
 * `fatal: true` and the transport closes the connection.
 *
 * This file frames commands (lines, literals, limits, resynchronisation);
 * `tokenizer.ts` reads tag, name and arguments from a framed command.
 *
 * Liberal where real clients differ from the RFC: bare LF ends a line,
 * several spaces between tokens are fine, `{n+}` (LITERAL+) and `~{n}`
 * (literal8) are accepted although we do not advertise them, 8-bit bytes in
 * quoted strings are read as UTF-8.
 */

import { InputBuffer } from "./input_buffer.ts";
import { type Command, CommandSyntaxError, isTagChar, type Part, tokenizeCommand } from "./tokenizer.ts";

export {
  type AtomToken,
  type Command,
  CommandSyntaxError,
  isAtom,
  isAtomChar,
  type ListToken,
  type StringToken,
  type Token,
  tokenText,
} from "./tokenizer.ts";

/** Size limits of one command. */
export interface ParserLimits {
  /** Longest line (without CRLF), bytes; the text of all lines of one command counts together. */
  maxLineBytes: number;
  /** Largest total of literal bytes in one command. */
  maxLiteralBytes: number;
}
/** What {@link CommandParser.next} returns. */
export type ParseEvent =
  | { type: "command"; command: Command }
  | { type: "line"; text: string }
  | { type: "continue" }
  | { type: "error"; tag: string | null; message: string; fatal: boolean }
  | { type: "need-more" };

/** Longest `~{4294967295+}` announcement we look for at a line end. */
const MAX_ANNOUNCEMENT = 16;
/** Literal sizes above this are not representable as 32-bit (RFC 3501 `number`). */
const MAX_NUMBER = 0xffffffff;
const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;

/** A literal announced at the end of a line. */
export interface LiteralAnnouncement {
  /** Announced size, bytes (may exceed any limit: check before allocating). */
  size: number;
  /** False for `{n+}`: the client sends the bytes without waiting for `+`. */
  sync: boolean;
  /** Where the announcement (`{`, or `~` of literal8) starts in the line. */
  start: number;
}

/**
 * Finds a literal announcement (`{n}`, `{n+}`, `~{n}`) at the end of a line
 * (CRLF already removed).
 *
 * @returns the announcement, or null if the line does not end with one
 */
export function literalAtEnd(line: Uint8Array): LiteralAnnouncement | null {
  let i = line.length - 1;
  if (i < 2 || line[i] !== 0x7d /* } */) return null;
  i--;
  let sync = true;
  if (line[i] === 0x2b /* + */) {
    sync = false;
    i--;
  }
  const digitsEnd = i + 1;
  while (i >= 0 && line[i]! >= 0x30 && line[i]! <= 0x39) i--;
  const digits = digitsEnd - (i + 1);
  if (digits === 0 || i < 0 || line[i] !== 0x7b /* { */) return null;
  let size = 0;
  for (let k = i + 1; k < digitsEnd; k++) size = size * 10 + (line[k]! - 0x30);
  // More than 10 digits cannot be a valid number; report it as huge so limits reject it.
  if (digits > 10) size = Number.MAX_SAFE_INTEGER;
  const start = i > 0 && line[i - 1] === 0x7e /* ~ */ ? i - 1 : i;
  return { size, sync, start };
}
const decoder = new TextDecoder();

/**
 * Incremental IMAP command parser. One per connection.
 *
 * @example
 * ```ts
 * import { CommandParser } from "./parser.ts";
 * const p = new CommandParser({ maxLineBytes: 8192, maxLiteralBytes: 8192 });
 * p.push(new TextEncoder().encode('a1 LOGIN {5}\r\n'));
 * if (p.next().type !== "continue") throw new Error("want +");
 * p.push(new TextEncoder().encode('alice "pw"\r\n'));
 * const ev = p.next();
 * if (ev.type !== "command" || ev.command.name !== "LOGIN") throw new Error("no command");
 * ```
 */
export class CommandParser {
  readonly #limits: ParserLimits;
  /** Unconsumed input (appending copies only the new bytes, see `input_buffer.ts`). */
  readonly #in = new InputBuffer();
  /** Where to resume the LF search in {@link #buf}. */
  #scanFrom = 0;
  /** Pieces of the command being assembled. */
  #parts: Part[] = [];
  #textBytes = 0;
  #literalBytes = 0;
  /** Literal being filled. */
  #literal: { bytes: InputBuffer; size: number } | null = null;
  /** Bytes still to discard (skipping a rejected non-synchronizing literal). */
  #skipLiteral = 0;
  /** Discarding up to the next LF (after an overlong line). */
  #skipLine = false;
  /** Last bytes of a skipped line, to spot a literal announced at its end. */
  #skipTail: Uint8Array = new Uint8Array(0);
  /** Next line is raw (AUTHENTICATE response, IDLE's DONE). */
  #rawLine = false;
  #fatal = false;

  /** @param limits line and literal limits */
  constructor(limits: ParserLimits) {
    this.#limits = limits;
  }

  /** Bytes received and not yet consumed (for tests and the proxy hand-back). */
  get buffered(): number {
    return this.#in.length;
  }

  /** Bytes copied into the input buffer so far: linear in what arrived (for tests of the cost). */
  get bytesCopied(): number {
    return this.#in.copied;
  }

  /** Memory this parser holds for the client, bytes (input store plus the literal being received). */
  get heldBytes(): number {
    return this.#in.capacity + (this.#literal?.bytes.capacity ?? 0);
  }

  /** Unconsumed input as a view, valid until the next {@link push}. */
  get #buf(): Uint8Array {
    return this.#in.view();
  }

  /** True while a command is partly received (a timeout then means a half-sent command). */
  get midCommand(): boolean {
    return this.#parts.length > 0 || this.#literal !== null || this.#buf.length > 0;
  }

  /** True between commands: nothing half-parsed and nothing being skipped (the proxy may take over the stream). */
  get idle(): boolean {
    return this.#parts.length === 0 && this.#literal === null && this.#skipLiteral === 0 && !this.#skipLine &&
      !this.#fatal;
  }

  /** Appends received bytes. */
  push(chunk: Uint8Array): void {
    if (this.#fatal) return;
    this.#in.push(chunk);
  }

  /** Makes the next complete line come back raw, as a `line` event. */
  expectLine(): void {
    this.#rawLine = true;
  }

  /** Removes and returns every unconsumed byte (the proxy hands them back to its own framer). */
  takeBuffered(): Uint8Array {
    this.#scanFrom = 0;
    return this.#in.take();
  }

  /** Returns the next event. Call until `need-more`. */
  next(): ParseEvent {
    for (;;) {
      if (this.#fatal) return { type: "need-more" };
      if (this.#skipLiteral > 0) {
        const n = Math.min(this.#skipLiteral, this.#buf.length);
        this.#consume(n);
        this.#skipLiteral -= n;
        if (this.#skipLiteral > 0) return { type: "need-more" };
        continue;
      }
      if (this.#literal !== null) {
        const lit = this.#literal;
        const n = Math.min(lit.size - lit.bytes.length, this.#buf.length);
        // Memory follows what arrived, not what `{n}` announced: a client that announces and stalls costs nothing.
        lit.bytes.push(this.#buf.subarray(0, n));
        this.#consume(n);
        if (lit.bytes.length < lit.size) return { type: "need-more" };
        this.#parts.push({ literal: lit.bytes.take() });
        this.#literal = null;
        continue;
      }
      if (this.#skipLine) {
        const ev = this.#skipToLineEnd();
        if (ev) return ev;
        continue;
      }
      const lf = this.#buf.indexOf(LF, this.#scanFrom);
      const room = this.#limits.maxLineBytes - this.#textBytes;
      if (lf < 0) {
        this.#scanFrom = this.#buf.length;
        // +1: a CR waiting for its LF does not count against the limit.
        if (this.#buf.length > room + 1) {
          const tag = this.#rawLine ? null : this.#tagOf(this.#buf);
          this.#rawLine = false;
          this.#resetCommand();
          this.#skipLine = true;
          return { type: "error", tag, message: "Line too long", fatal: false };
        }
        return { type: "need-more" };
      }
      const end = lf > 0 && this.#buf[lf - 1] === CR ? lf - 1 : lf;
      const line = this.#buf.slice(0, end);
      this.#consume(lf + 1);
      if (this.#rawLine) {
        this.#rawLine = false;
        if (line.length > this.#limits.maxLineBytes) {
          return { type: "error", tag: null, message: "Line too long", fatal: false };
        }
        return { type: "line", text: decoder.decode(line) };
      }
      if (line.length > room) {
        const tag = this.#tagOf(this.#parts.length ? this.#firstText() : line);
        this.#resetCommand();
        return this.#afterRejectedLine(line, { type: "error", tag, message: "Line too long", fatal: false });
      }
      if (line.length === 0 && this.#parts.length === 0) continue; // stray empty line: ignore, like most servers
      const ann = literalAtEnd(line);
      if (ann === null) {
        this.#parts.push({ text: line });
        const parts = this.#parts;
        this.#resetCommand();
        try {
          return { type: "command", command: tokenizeCommand(parts) };
        } catch (e) {
          if (!(e instanceof CommandSyntaxError)) throw e;
          return { type: "error", tag: e.tag, message: e.message, fatal: false };
        }
      }
      if (this.#literalBytes + ann.size > this.#limits.maxLiteralBytes) {
        const tag = this.#tagOf(this.#parts.length ? this.#firstText() : line);
        this.#resetCommand();
        return this.#afterRejectedLine(line, {
          type: "error",
          tag,
          message: `Literal too large: at most ${this.#limits.maxLiteralBytes} bytes`,
          fatal: false,
        });
      }
      this.#textBytes += line.length;
      this.#literalBytes += ann.size;
      this.#parts.push({ text: line.subarray(0, ann.start) });
      this.#literal = { bytes: new InputBuffer(), size: ann.size };
      if (ann.sync) return { type: "continue" };
    }
  }

  /**
   * After rejecting a complete line: a synchronizing literal at its end is
   * never sent (the client waits for `+`), a small non-synchronizing one is
   * skipped, a large one makes the stream unrecoverable.
   */
  #afterRejectedLine(line: Uint8Array, ev: ParseEvent & { type: "error" }): ParseEvent {
    const ann = literalAtEnd(line);
    if (ann !== null && !ann.sync) {
      if (ann.size > this.#limits.maxLiteralBytes || ann.size > MAX_NUMBER) {
        this.#fatal = true;
        return { ...ev, fatal: true };
      }
      this.#skipLiteral = ann.size;
    }
    return ev;
  }

  /** Discards input up to the next LF; returns an event only when the stream is lost. */
  #skipToLineEnd(): ParseEvent | null {
    const lf = this.#buf.indexOf(LF);
    if (lf < 0) {
      const all = this.#buf;
      const tail = new Uint8Array(Math.min(MAX_ANNOUNCEMENT, this.#skipTail.length + all.length));
      const joined = new Uint8Array(this.#skipTail.length + all.length);
      joined.set(this.#skipTail);
      joined.set(all, this.#skipTail.length);
      tail.set(joined.subarray(joined.length - tail.length));
      this.#skipTail = tail;
      this.#consume(all.length);
      return { type: "need-more" };
    }
    const end = lf > 0 && this.#buf[lf - 1] === CR ? lf - 1 : lf;
    const last = new Uint8Array(this.#skipTail.length + end);
    last.set(this.#skipTail);
    last.set(this.#buf.subarray(0, end), this.#skipTail.length);
    this.#consume(lf + 1);
    this.#skipLine = false;
    this.#skipTail = new Uint8Array(0);
    const ann = literalAtEnd(last.subarray(Math.max(0, last.length - MAX_ANNOUNCEMENT)));
    if (ann !== null && !ann.sync) {
      if (ann.size > this.#limits.maxLiteralBytes) {
        this.#fatal = true;
        return { type: "error", tag: null, message: "Literal too large", fatal: true };
      }
      this.#skipLiteral = ann.size;
    }
    return null;
  }

  #firstText(): Uint8Array {
    const p = this.#parts[0];
    return p && "text" in p ? p.text : new Uint8Array(0);
  }

  /** The tag at the start of `line`, if it looks like one. */
  #tagOf(line: Uint8Array): string | null {
    let i = 0;
    while (i < line.length && i < 64 && isTagChar(line[i]!)) i++;
    if (i === 0 || (i < line.length && line[i] !== SP)) return null;
    return decoder.decode(line.subarray(0, i));
  }

  #consume(n: number): void {
    this.#in.consume(n);
    this.#scanFrom = Math.max(0, this.#scanFrom - n);
    if (this.#in.length === 0) this.#scanFrom = 0;
  }

  #resetCommand(): void {
    this.#parts = [];
    this.#textBytes = 0;
    this.#literalBytes = 0;
    this.#literal = null;
  }
}
