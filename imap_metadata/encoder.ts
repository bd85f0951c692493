/**
 * @module
 * Pure reply encoder: {@link Reply} data in, wire bytes out. The session
 * reducer returns replies as data; the transport calls {@link encodeReplies}
 * and writes the bytes.
 *
 * Strings follow what Delta Chat core can read (spec §2.4, §4.3): printable
 * 7-bit text without `"` or `\` is quoted; anything else is sent as a literal
 * `{n}\r\n<bytes>` because core's parser does not undo quoted escapes and
 * unwraps quoted strings as raw bytes. A METADATA reply is always one line
 * with single spaces, and is omitted when it would be empty (`* METADATA ""
 * ()` is a parse error in core).
 */

/** A tagged or untagged status. */
export type Status = "OK" | "NO" | "BAD";

/** One server entry in a METADATA response: value null is `NIL`. */
export interface MetadataEntry {
  /** Entry name as it should appear on the wire. */
  name: string;
  /** Value, or null for `NIL`. */
  value: string | null;
}

/** A reply the session wants sent. */
export type Reply =
  /** `tag OK [code] text` */
  | { type: "tagged"; tag: string; status: Status; code?: string; text: string }
  /** `* OK [code] text`, `* BYE text`, `* PREAUTH …` */
  | { type: "untagged"; status: Status | "BYE" | "PREAUTH"; code?: string; text: string }
  /** `* <text>`: CAPABILITY, LIST, EXISTS, FLAGS, STATUS, SEARCH lines (ASCII, built with {@link astring}). */
  | { type: "data"; text: string }
  /** `* METADATA <mailbox> (<name> <value> …)` */
  | { type: "metadata"; mailbox: string; entries: MetadataEntry[] }
  /** `+ text` */
  | { type: "continue"; text: string };

const encoder = new TextEncoder();

/** True if `bytes` can go in a quoted string that any client reads back unchanged. */
export function isQuotable(bytes: Uint8Array): boolean {
  for (const b of bytes) {
    if (b < 0x20 || b > 0x7e || b === 0x22 || b === 0x5c) return false;
  }
  return true;
}

/**
 * Encodes a string value: quoted when safe, else a literal.
 *
 * @example
 * ```ts
 * import { encodeString } from "./encoder.ts";
 * const t = (s: string) => new TextDecoder().decode(encodeString(s));
 * if (t("http://x/") !== '"http://x/"') throw new Error("quoted");
 * if (t("Grüße") !== "{7}\r\nGrüße") throw new Error("literal");
 * ```
 */
export function encodeString(value: string): Uint8Array {
  const bytes = encoder.encode(value);
  if (isQuotable(bytes)) return encoder.encode(`"${value}"`);
  const head = encoder.encode(`{${bytes.length}}\r\n`);
  const out = new Uint8Array(head.length + bytes.length);
  out.set(head);
  out.set(bytes, head.length);
  return out;
}

/** Encodes a value, `NIL` for null. */
export function encodeNString(value: string | null): Uint8Array {
  return value === null ? encoder.encode("NIL") : encodeString(value);
}

/**
 * A mailbox or other astring for an ASCII-only `data` line: quoted, with
 * `\` and `"` escaped (RFC 3501 quoted-specials; these names are ours or
 * echo what the client sent, never Delta Chat's METADATA values).
 */
export function astring(value: string): string {
  return `"${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** `* METADATA <mailbox> (<entry> <value> …)` with CRLF, or an empty array when there are no entries. */
export function encodeMetadata(mailbox: string, entries: readonly MetadataEntry[]): Uint8Array {
  if (entries.length === 0) return new Uint8Array(0);
  const pieces: Uint8Array[] = [encoder.encode("* METADATA "), encodeString(mailbox), encoder.encode(" (")];
  entries.forEach((e, i) => {
    pieces.push(encoder.encode(`${i > 0 ? " " : ""}${e.name} `), encodeNString(e.value));
  });
  pieces.push(encoder.encode(")\r\n"));
  return concat(pieces);
}

/** `* CAPABILITY …` text for a `data` reply. */
export function capabilityData(caps: readonly string[]): string {
  return `CAPABILITY ${caps.join(" ")}`;
}

/** `CAPABILITY …` response code for a tagged OK or the greeting. */
export function capabilityCode(caps: readonly string[]): string {
  return `CAPABILITY ${caps.join(" ")}`;
}

function status(prefix: string, st: string, code: string | undefined, text: string): string {
  return `${prefix} ${st}${code !== undefined ? ` [${code}]` : ""}${text ? ` ${text}` : ""}\r\n`;
}

/** Encodes one reply. */
export function encodeReply(r: Reply): Uint8Array {
  switch (r.type) {
    case "tagged":
      return encoder.encode(status(r.tag, r.status, r.code, r.text));
    case "untagged":
      return encoder.encode(status("*", r.status, r.code, r.text));
    case "data":
      return encoder.encode(`* ${r.text}\r\n`);
    case "metadata":
      return encodeMetadata(r.mailbox, r.entries);
    case "continue":
      return encoder.encode(`+ ${r.text}\r\n`);
  }
}

/** Encodes replies into one buffer, so the transport makes one write per batch. */
export function encodeReplies(replies: readonly Reply[]): Uint8Array {
  return concat(replies.map(encodeReply));
}

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
