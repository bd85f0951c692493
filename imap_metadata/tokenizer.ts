/**
 * @module
 * Pure tokenizer of one framed IMAP command (RFC 3501 §9, RFC 9051 §9): the
 * grammar of tag, command name and arguments (atoms, quoted strings,
 * literals, nested lists) over the text and literal pieces that
 * `CommandParser` in `parser.ts` cut from the stream. No sockets,
 * timers or `Deno.*`; it never sees a partial command, so it needs no
 * limits of its own beyond the list depth.
 *
 * Liberal where real clients differ from the RFC: several spaces between
 * tokens are fine, 8-bit bytes in quoted strings are read as UTF-8, bare
 * arguments take LIST patterns, sequence sets and FETCH sections whole.
 */

/** An atom, a number or `NIL` (compare case-insensitively). */
export interface AtomToken {
  /** Discriminant. */
  type: "atom";
  /** The atom text as sent. */
  value: string;
}

/** A quoted string or a literal. */
export interface StringToken {
  /** Discriminant. */
  type: "string";
  /** Decoded text (UTF-8, escapes undone). */
  value: string;
  /** True if it came as `{n}` (or `{n+}`, `~{n}`). */
  literal: boolean;
}

/** A parenthesized list. */
export interface ListToken {
  /** Discriminant. */
  type: "list";
  /** Items in order. */
  items: Token[];
}

/** One argument of a command. */
export type Token = AtomToken | StringToken | ListToken;

/** A complete client command. */
export interface Command {
  /** The client's tag, as sent. */
  tag: string;
  /** Command name, upper-cased (`UID FETCH` is `UID` with `FETCH` as first argument). */
  name: string;
  /** Arguments after the name. */
  args: Token[];
}

/** A piece of one command as framed by the parser: text of a line (announcement cut off) or literal bytes. */
export type Part = { text: Uint8Array } | { literal: Uint8Array };

const SP = 0x20;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const LPAREN = 0x28;
const RPAREN = 0x29;

const decoder = new TextDecoder();

/** A command that frames correctly but does not tokenize. */
export class CommandSyntaxError extends SyntaxError {
  /** The tag, if it could be read. */
  readonly tag: string | null;
  /** @param tag the command's tag or null; @param message what is wrong */
  constructor(tag: string | null, message: string) {
    super(message);
    this.name = "CommandSyntaxError";
    this.tag = tag;
  }
}

/** ATOM-CHAR (RFC 3501): any CHAR except atom-specials. `]` is allowed in astrings and tags. */
export function isAtomChar(c: number): boolean {
  return c > 0x20 && c < 0x7f && c !== LPAREN && c !== RPAREN && c !== 0x7b && c !== DQUOTE && c !== BACKSLASH &&
    c !== 0x25 && c !== 0x2a;
}
/** A tag character: ASTRING-CHAR except `+`. */
export function isTagChar(c: number): boolean {
  return isAtomChar(c) && c !== 0x2b;
}

/**
 * Characters of a bare argument. Wider than ATOM-CHAR so LIST patterns
 * (`*`, `%`), sequence sets (`1:*`) and FETCH sections (`BODY[TEXT]`) read
 * as one atom; brackets nest so `BODY[HEADER.FIELDS (A B)]` stays whole.
 */
function isBareChar(c: number): boolean {
  return c > 0x20 && c < 0x7f && c !== LPAREN && c !== RPAREN && c !== DQUOTE && c !== 0x7b;
}

/** Walks the parts of one command. */
class Cursor {
  readonly parts: Part[];
  part = 0;
  pos = 0;
  constructor(parts: Part[]) {
    this.parts = parts;
  }

  /** Current text part, or null at a literal or the end. */
  text(): Uint8Array | null {
    const p = this.parts[this.part];
    return p && "text" in p ? p.text : null;
  }

  /** Byte at the cursor in the current text part, or -1 at its end. */
  peek(): number {
    const t = this.text();
    return t && this.pos < t.length ? t[this.pos]! : -1;
  }

  /** True at the end of a text part followed by a literal. */
  atLiteral(): boolean {
    const t = this.text();
    if (t === null) return this.parts[this.part] !== undefined;
    if (this.pos < t.length) return false;
    const next = this.parts[this.part + 1];
    return next !== undefined && "literal" in next;
  }

  /** Takes the literal following the current text part. */
  takeLiteral(): Uint8Array {
    const t = this.text();
    if (t !== null) this.part++;
    const p = this.parts[this.part] as { literal: Uint8Array };
    this.part++;
    this.pos = 0;
    return p.literal;
  }

  atEnd(): boolean {
    const t = this.text();
    return t !== null && this.pos >= t.length && this.part === this.parts.length - 1;
  }
}
/**
 * Tokenizes the parts of one framed command into tag, name and arguments.
 * @throws {CommandSyntaxError}
 */
export function tokenizeCommand(parts: Part[]): Command {
  const c = new Cursor(parts);
  const first = c.text()!;
  let i = 0;
  while (i < first.length && isTagChar(first[i]!)) i++;
  if (i === 0 || (i < first.length && first[i] !== SP)) throw new CommandSyntaxError(null, "Invalid tag");
  const tag = decoder.decode(first.subarray(0, i));
  c.pos = i;
  if (c.peek() !== SP) throw new CommandSyntaxError(tag, "Missing command");
  skipSpaces(c);
  const nameStart = c.pos;
  while (c.peek() >= 0 && isCommandNameChar(c.peek())) c.pos++;
  if (c.pos === nameStart) throw new CommandSyntaxError(tag, "Missing command");
  if (c.peek() >= 0 && c.peek() !== SP) throw new CommandSyntaxError(tag, "Invalid command name");
  const name = decoder.decode(first.subarray(nameStart, c.pos)).toUpperCase();
  const args: Token[] = [];
  try {
    for (;;) {
      if (c.atEnd()) break;
      if (!c.atLiteral()) {
        if (c.peek() !== SP) throw new SyntaxError("Expected a space between arguments");
        skipSpaces(c);
        if (c.atEnd()) break; // trailing spaces: liberal
      }
      args.push(readToken(c, 0));
    }
  } catch (e) {
    if (e instanceof SyntaxError) throw new CommandSyntaxError(tag, e.message);
    throw e;
  }
  return { tag, name, args };
}

function isCommandNameChar(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e ||
    c === 0x5f;
}

function skipSpaces(c: Cursor): void {
  while (c.peek() === SP) c.pos++;
}

/** Deepest list nesting we accept; protects the recursion. */
const MAX_DEPTH = 32;

/** Reads one token at the cursor. @throws {SyntaxError} */
function readToken(c: Cursor, depth: number): Token {
  if (c.atLiteral()) {
    return { type: "string", value: decoder.decode(c.takeLiteral()), literal: true };
  }
  const ch = c.peek();
  if (ch === DQUOTE) return readQuoted(c);
  if (ch === LPAREN) {
    if (depth >= MAX_DEPTH) throw new SyntaxError("Lists nested too deeply");
    c.pos++;
    const items: Token[] = [];
    for (;;) {
      if (c.peek() === RPAREN) {
        c.pos++;
        return { type: "list", items };
      }
      if (items.length > 0 && !c.atLiteral()) {
        if (c.peek() !== SP) throw new SyntaxError("Expected a space or ) in a list");
        skipSpaces(c);
        if (c.peek() === RPAREN) continue;
      }
      if (c.peek() < 0 && !c.atLiteral()) throw new SyntaxError("Unterminated list");
      items.push(readToken(c, depth + 1));
    }
  }
  if (ch < 0) throw new SyntaxError("Missing argument");
  if (!isBareChar(ch)) throw new SyntaxError(`Unexpected character 0x${ch.toString(16).padStart(2, "0")}`);
  const t = c.text()!;
  const start = c.pos;
  let brackets = 0;
  for (;;) {
    const b = c.peek();
    if (b < 0) break;
    if (b === 0x5b /* [ */) brackets++;
    else if (b === 0x5d /* ] */ && brackets > 0) brackets--;
    else if (brackets === 0 && !isBareChar(b)) break;
    else if (brackets > 0 && (b < 0x20 || b === 0x7f)) break;
    c.pos++;
  }
  if (brackets > 0) throw new SyntaxError("Unterminated [");
  return { type: "atom", value: decoder.decode(t.subarray(start, c.pos)) };
}

function readQuoted(c: Cursor): StringToken {
  c.pos++;
  const out: number[] = [];
  for (;;) {
    const b = c.peek();
    if (b < 0) throw new SyntaxError("Unterminated quoted string");
    c.pos++;
    if (b === DQUOTE) break;
    if (b === BACKSLASH) {
      const e = c.peek();
      if (e !== DQUOTE && e !== BACKSLASH) throw new SyntaxError("Invalid escape in quoted string");
      out.push(e);
      c.pos++;
      continue;
    }
    if (b === 0) throw new SyntaxError("NUL in quoted string");
    out.push(b);
  }
  return { type: "string", value: decoder.decode(Uint8Array.from(out)), literal: false };
}

/** The text of an atom or string token, or null for a list. */
export function tokenText(t: Token | undefined): string | null {
  if (t === undefined || t.type === "list") return null;
  return t.value;
}

/** True for an atom equal to `word`, ignoring case. */
export function isAtom(t: Token | undefined, word: string): boolean {
  return t !== undefined && t.type === "atom" && t.value.toUpperCase() === word.toUpperCase();
}
