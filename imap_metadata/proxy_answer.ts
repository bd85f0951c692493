/**
 * @module
 * Pure answers of the proxy to the commands it intercepts (spec §4.4):
 * GETMETADATA entries we own are answered from the configured entries; the
 * rest (e.g. `/private/…`, other mailboxes, unknown `/shared` names) is
 * re-encoded and forwarded when the upstream has METADATA; SETMETADATA of an
 * entry we own is refused like in standalone mode; COMPRESS and STARTTLS
 * are declined. `proxy_session.ts` frames the streams and decides when an
 * answer may be written; nothing here does I/O.
 */

import { concat, encodeReplies, isQuotable, type MetadataEntry, type Reply } from "./encoder.ts";
import { type GetMetadataRequest, lookupMetadata, parseGetMetadata, parseSetMetadata } from "./metadata.ts";
import type { Command } from "./parser.ts";
import type { QueueEntry } from "./proxy_queue.ts";
import { setMetadataReply } from "./session_mailbox.ts";

/** What an answer needs from its session. */
export interface InterceptContext {
  /** Server entries we answer, lowercase name → value. */
  entries: ReadonlyMap<string, string>;
  /** The upstream accepted a login. */
  authenticated: boolean;
  /** The upstream's capabilities as last seen (upper-case). */
  upstreamCaps: ReadonlySet<string>;
  /** Counts a metric-worthy event. */
  event(event: "bad" | "getmetadata"): void;
  /** Sends a rewritten command to the upstream. */
  toUpstream(bytes: Uint8Array): void;
}

const enc = new TextEncoder();
/** Marks a string we cannot send upstream (see `upString`); compared by identity. */
const EMPTY_MARK = new Uint8Array(0);

/**
 * Answers an intercepted command (COMPRESS, STARTTLS, GETMETADATA,
 * SETMETADATA); returns what replaces it at the queue head. The part of a
 * GETMETADATA or SETMETADATA that names entries we do not own goes to
 * `ctx.toUpstream` re-encoded, and a `forwarded` entry waits for its reply.
 */
export function answerIntercepted(cmd: Command, ctx: InterceptContext): QueueEntry[] {
  const local = (replies: Reply[]): QueueEntry => ({ kind: "local", bytes: encodeReplies(replies) });
  const tagged = (status: "OK" | "NO" | "BAD", text: string, code?: string): Reply =>
    code === undefined
      ? { type: "tagged", tag: cmd.tag, status, text }
      : { type: "tagged", tag: cmd.tag, status, code, text };
  switch (cmd.name) {
    case "COMPRESS":
      return [local([tagged("NO", "COMPRESS is not available through this proxy", "CANNOT")])];
    case "STARTTLS":
      ctx.event("bad");
      return [local([tagged("BAD", "STARTTLS is not offered: connect with implicit TLS")])];
    case "GETMETADATA":
      ctx.event("getmetadata");
      if (!ctx.authenticated) {
        ctx.event("bad");
        return [local([tagged("BAD", "Log in first")])];
      }
      return getMetadata(cmd, ctx, local, tagged);
    case "SETMETADATA":
      if (!ctx.authenticated) {
        ctx.event("bad");
        return [local([tagged("BAD", "Log in first")])];
      }
      return setMetadata(cmd, ctx, local, tagged);
  }
  return [local([tagged("BAD", "Unknown command")])];
}

function getMetadata(
  cmd: Command,
  ctx: InterceptContext,
  local: (r: Reply[]) => QueueEntry,
  tagged: (s: "OK" | "NO" | "BAD", text: string, code?: string) => Reply,
): QueueEntry[] {
  let req: GetMetadataRequest;
  try {
    req = parseGetMetadata(cmd.args);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    ctx.event("bad");
    return [local([tagged("BAD", e.message)])];
  }
  const store = ctx.entries;
  const upstreamHas = ctx.upstreamCaps.has("METADATA");
  const ours = req.mailbox === "" ? req.entries.filter((n) => store.has(n.toLowerCase())) : [];
  // Sets, not Array.includes: the entry list is client input (thousands of names fit a line), and per-name scans
  // of it were quadratic.
  const oursSet = new Set(ours);
  const remote = upstreamHas ? req.entries.filter((n) => !oursSet.has(n)) : [];
  // Without upstream METADATA every name is ours: unknown ones are NIL; other mailboxes have no entries.
  const answered = upstreamHas ? ours : req.entries;
  const storeKeys = [...store.keys()];
  const withChildren = req.depth === "0" ? [] : remote.filter((n) => {
    const p = n.toLowerCase() + "/";
    return req.mailbox === "" && storeKeys.some((k) => k.startsWith(p));
  });
  const withChildrenSet = new Set(withChildren);
  const found = lookupMetadata(req.mailbox === "" ? store : new Map(), {
    ...req,
    entries: [...answered, ...withChildren],
  });
  const entries: MetadataEntry[] = found.entries.filter((e) => !(e.value === null && withChildrenSet.has(e.name)));
  const out: QueueEntry[] = [];
  if (entries.length > 0) out.push(local([{ type: "metadata", mailbox: req.mailbox, entries }]));
  if (remote.length === 0) {
    const code = found.longEntries !== undefined ? `METADATA LONGENTRIES ${found.longEntries}` : undefined;
    out.push(local([tagged("OK", "GETMETADATA completed", code)]));
    return out;
  }
  const opts: string[] = [];
  if (req.maxSize !== undefined) opts.push(`MAXSIZE ${req.maxSize}`);
  if (req.depth !== "0") opts.push(`DEPTH ${req.depth}`);
  const parts = [
    enc.encode(`${cmd.tag} GETMETADATA ${opts.length ? `(${opts.join(" ")}) ` : ""}`),
    upString(ctx, req.mailbox),
    enc.encode(" ("),
    ...remote.flatMap((n, i) => [enc.encode(i > 0 ? " " : ""), upString(ctx, n)]),
    enc.encode(")\r\n"),
  ];
  return forwardRewritten(ctx, parts, cmd.tag, out, local, tagged);
}

function setMetadata(
  cmd: Command,
  ctx: InterceptContext,
  local: (r: Reply[]) => QueueEntry,
  tagged: (s: "OK" | "NO" | "BAD", text: string, code?: string) => Reply,
): QueueEntry[] {
  let req;
  try {
    req = parseSetMetadata(cmd.args);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    ctx.event("bad");
    return [local([tagged("BAD", e.message)])];
  }
  const ownsOne = req.mailbox === "" && req.values.some((v) => ctx.entries.has(v.name.toLowerCase()));
  if (ownsOne || !ctx.upstreamCaps.has("METADATA")) return [local([setMetadataReply(cmd.tag, req, () => true)])];
  const parts = [enc.encode(`${cmd.tag} SETMETADATA `), upString(ctx, req.mailbox), enc.encode(" (")];
  req.values.forEach((v, i) => {
    parts.push(enc.encode(i > 0 ? " " : ""), upString(ctx, v.name), enc.encode(" "));
    parts.push(v.value === null ? enc.encode("NIL") : upString(ctx, v.value));
  });
  parts.push(enc.encode(")\r\n"));
  return forwardRewritten(ctx, parts, cmd.tag, [], local, tagged);
}

/** A string for a command we send upstream: quoted, else a LITERAL+ literal; null parts mean "cannot". */
function upString(ctx: InterceptContext, s: string): Uint8Array {
  const bytes = enc.encode(s);
  if (isQuotable(bytes)) return enc.encode(`"${s}"`);
  if (!ctx.upstreamCaps.has("LITERAL+") && !(ctx.upstreamCaps.has("LITERAL-") && bytes.length <= 4096)) {
    return EMPTY_MARK;
  }
  return concat([enc.encode(`{${bytes.length}+}\r\n`), bytes]);
}

function forwardRewritten(
  ctx: InterceptContext,
  parts: Uint8Array[],
  tag: string,
  before: QueueEntry[],
  local: (r: Reply[]) => QueueEntry,
  tagged: (s: "OK" | "NO" | "BAD", text: string, code?: string) => Reply,
): QueueEntry[] {
  if (parts.includes(EMPTY_MARK)) {
    // A synchronizing literal would need the upstream's "+", which we do not wait for: refuse instead.
    return [...before, local([tagged("NO", "Cannot forward this without LITERAL+ at the upstream", "CANNOT")])];
  }
  ctx.toUpstream(concat(parts));
  return [...before, { kind: "forwarded", tag }];
}
