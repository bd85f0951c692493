/**
 * @module
 * Pure METADATA logic (RFC 5464): reading GETMETADATA/SETMETADATA arguments,
 * checking entry names, and looking entries up with DEPTH and MAXSIZE.
 *
 * Reading is liberal (spec §3 errata): options may come before the mailbox
 * (RFC order) or after it (MailKit: `GETMETADATA "" (MAXSIZE 1024 DEPTH
 * infinity) (/private)`); a single entry may come without parentheses.
 *
 * Lookup (spec §4.3):
 * - names compare case-insensitively; a requested name is echoed as the
 *   client spelled it (core matches its own lowercase spelling exactly),
 *   children found by DEPTH in our stored (lowercase) spelling;
 * - a listed name with no value is `NIL`, unless DEPTH found children for it;
 * - MAXSIZE leaves out longer values and reports the largest left-out size
 *   for `[METADATA LONGENTRIES n]`.
 */

import type { MetadataEntry } from "./encoder.ts";
import { isAtom, type Token, tokenText } from "./parser.ts";

/** DEPTH option values. */
export type Depth = "0" | "1" | "infinity";

/** A parsed GETMETADATA command. */
export interface GetMetadataRequest {
  /** Mailbox name; `""` means server entries. */
  mailbox: string;
  /** Entry names as sent. */
  entries: string[];
  /** MAXSIZE option, if given. */
  maxSize?: number;
  /** DEPTH option (default `0`). */
  depth: Depth;
}

/** A parsed SETMETADATA command. */
export interface SetMetadataRequest {
  /** Mailbox name; `""` means server entries. */
  mailbox: string;
  /** Entries to set; value null deletes. */
  values: MetadataEntry[];
}

/** What {@link lookupMetadata} found. */
export interface LookupResult {
  /** Entries for the one METADATA line, in request order. */
  entries: MetadataEntry[];
  /** Largest value left out because of MAXSIZE, if any. */
  longEntries?: number;
}

/**
 * Checks an entry name against RFC 5464 §3.2.
 * @returns null if valid, else the problem
 */
export function entryNameProblem(name: string): string | null {
  const lower = name.toLowerCase();
  if (!(lower === "/private" || lower === "/shared" || lower.startsWith("/private/") || lower.startsWith("/shared/"))) {
    return "Entry names start with /private or /shared";
  }
  if (name.includes("//")) return "Entry names must not contain //";
  if (name.endsWith("/")) return "Entry names must not end with /";
  // deno-lint-ignore no-control-regex
  if (/[*%\x00-\x19\x7f-\uffff]/.test(name)) return "Entry names must be ASCII without *, % or control characters";
  return null;
}

function isOptionList(t: Token | undefined): t is Token & { type: "list" } {
  if (t === undefined || t.type !== "list" || t.items.length === 0) return false;
  return isAtom(t.items[0], "MAXSIZE") || isAtom(t.items[0], "DEPTH");
}

function readOptions(list: Token & { type: "list" }, into: { maxSize?: number; depth?: Depth }): void {
  const items = list.items;
  for (let i = 0; i < items.length; i += 2) {
    const key = items[i];
    const val = tokenText(items[i + 1]);
    if (isAtom(key, "MAXSIZE")) {
      if (into.maxSize !== undefined) throw new SyntaxError("MAXSIZE given twice");
      if (val === null || !/^\d{1,10}$/.test(val) || Number(val) > 0xffffffff) {
        throw new SyntaxError("MAXSIZE needs a number");
      }
      into.maxSize = Number(val);
    } else if (isAtom(key, "DEPTH")) {
      if (into.depth !== undefined) throw new SyntaxError("DEPTH given twice");
      const d = val?.toLowerCase();
      if (d !== "0" && d !== "1" && d !== "infinity") throw new SyntaxError("DEPTH must be 0, 1 or infinity");
      into.depth = d;
    } else {
      throw new SyntaxError(`Unknown GETMETADATA option ${tokenText(key) ?? "(list)"}`);
    }
  }
}

function readEntryNames(t: Token | undefined): string[] {
  if (t === undefined) throw new SyntaxError("Missing entry names");
  const names = t.type === "list" ? t.items.map((i) => tokenText(i)) : [tokenText(t)];
  if (names.length === 0) throw new SyntaxError("Empty entry list");
  return names.map((n) => {
    if (n === null) throw new SyntaxError("Entry names must be strings");
    const problem = entryNameProblem(n);
    if (problem) throw new SyntaxError(problem);
    return n;
  });
}

function readMailbox(t: Token | undefined): string {
  const m = tokenText(t);
  if (m === null) throw new SyntaxError("Missing mailbox name");
  return m;
}

/**
 * Reads GETMETADATA arguments.
 * @throws {SyntaxError} malformed arguments (reply `BAD`)
 *
 * @example
 * ```ts
 * import { parseGetMetadata } from "./metadata.ts";
 * const r = parseGetMetadata([
 *   { type: "string", value: "", literal: false },
 *   { type: "list", items: [{ type: "atom", value: "MAXSIZE" }, { type: "atom", value: "1024" }] },
 *   { type: "list", items: [{ type: "atom", value: "/shared/comment" }] },
 * ]);
 * if (r.maxSize !== 1024 || r.entries[0] !== "/shared/comment") throw new Error("MailKit order");
 * ```
 */
export function parseGetMetadata(args: readonly Token[]): GetMetadataRequest {
  const opts: { maxSize?: number; depth?: Depth } = {};
  let i = 0;
  if (isOptionList(args[i])) readOptions(args[i++] as Token & { type: "list" }, opts);
  const mailbox = readMailbox(args[i++]);
  if (isOptionList(args[i]) && args[i + 1] !== undefined) readOptions(args[i++] as Token & { type: "list" }, opts);
  const entries = readEntryNames(args[i++]);
  if (i < args.length) throw new SyntaxError("Too many arguments");
  return {
    mailbox,
    entries,
    depth: opts.depth ?? "0",
    ...(opts.maxSize !== undefined ? { maxSize: opts.maxSize } : {}),
  };
}

/**
 * Reads SETMETADATA arguments: `mailbox (entry value …)`.
 * @throws {SyntaxError} malformed arguments (reply `BAD`)
 */
export function parseSetMetadata(args: readonly Token[]): SetMetadataRequest {
  const mailbox = readMailbox(args[0]);
  const list = args[1];
  if (list === undefined || list.type !== "list") throw new SyntaxError("Expected a list of entries and values");
  if (args.length > 2) throw new SyntaxError("Too many arguments");
  if (list.items.length === 0 || list.items.length % 2 !== 0) throw new SyntaxError("Expected entry-value pairs");
  const values: MetadataEntry[] = [];
  for (let i = 0; i < list.items.length; i += 2) {
    const [name] = readEntryNames(list.items[i]);
    const v = list.items[i + 1]!;
    if (v.type === "list") throw new SyntaxError("Values must be strings or NIL");
    const value = v.type === "atom" && v.value.toUpperCase() === "NIL" ? null : v.value;
    if (v.type === "atom" && value !== null) throw new SyntaxError("Values must be quoted strings, literals or NIL");
    values.push({ name: name!, value });
  }
  return { mailbox, values };
}

function byteLength(s: string): number {
  return new TextEncoder().encode(s).length;
}

/**
 * Looks up entries in `store` (lowercase name → value).
 *
 * @example
 * ```ts
 * import { lookupMetadata } from "./metadata.ts";
 * const store = new Map([["/shared/vendor/deltachat/irohrelay", "http://127.0.0.1:3340/"]]);
 * const r = lookupMetadata(store, { mailbox: "", entries: ["/shared/comment", "/shared/vendor/deltachat/irohrelay"], depth: "0" });
 * if (r.entries[0]!.value !== null || r.entries[1]!.value !== "http://127.0.0.1:3340/") throw new Error("lookup");
 * ```
 */
export function lookupMetadata(store: ReadonlyMap<string, string>, req: GetMetadataRequest): LookupResult {
  const out: MetadataEntry[] = [];
  const seen = new Set<string>();
  let longest = -1;
  const add = (name: string, value: string | null) => {
    const key = name.toLowerCase();
    if (seen.has(key)) return;
    seen.add(key);
    if (value !== null && req.maxSize !== undefined) {
      const size = byteLength(value);
      if (size > req.maxSize) {
        longest = Math.max(longest, size);
        return;
      }
    }
    out.push({ name, value });
  };
  const sorted = req.depth === "0" ? [] : [...store.keys()].sort();
  for (const name of req.entries) {
    const lower = name.toLowerCase();
    const own = store.get(lower);
    let children = 0;
    if (req.depth !== "0") {
      const prefix = lower + "/";
      for (const k of sorted) {
        if (!k.startsWith(prefix)) continue;
        if (req.depth === "1" && k.indexOf("/", prefix.length) >= 0) continue;
        children++;
      }
    }
    if (own !== undefined || children === 0) add(name, own ?? null);
    if (children > 0) {
      const prefix = lower + "/";
      for (const k of sorted) {
        if (!k.startsWith(prefix)) continue;
        if (req.depth === "1" && k.indexOf("/", prefix.length) >= 0) continue;
        add(k, store.get(k)!);
      }
    }
  }
  return longest >= 0 ? { entries: out, longEntries: longest } : { entries: out };
}
