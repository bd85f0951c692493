/**
 * @module
 * The standalone session's mailbox and METADATA commands: the one mailbox
 * there is (INBOX, empty) for SELECT/EXAMINE, STATUS and LIST/LSUB, and
 * GETMETADATA/SETMETADATA over the server entries. Each handler adds its
 * replies to the session's {@link Out}; phase checks, login and the
 * command dispatch stay in `session.ts`. Pure.
 */

import { astring, type Reply } from "./encoder.ts";
import { listMatch } from "./list_pattern.ts";
import { lookupMetadata, parseGetMetadata, parseSetMetadata } from "./metadata.ts";
import { type Command, isAtom, type Token, tokenText } from "./parser.ts";
import type { Out, SessionConfig } from "./session.ts";

/** Flags SELECT lists (no permanent ones). */
const FLAGS = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/** The one mailbox there is: empty, UIDVALIDITY 1, UIDNEXT 1. */
const INBOX_STATUS: Record<string, number> = {
  MESSAGES: 0,
  RECENT: 0,
  UIDNEXT: 1,
  UIDVALIDITY: 1,
  UNSEEN: 0,
  DELETED: 0,
  SIZE: 0,
};

/** True for INBOX in any case (RFC 3501 §5.1). */
function isInbox(name: string): boolean {
  return name.toUpperCase() === "INBOX";
}

/** SELECT and EXAMINE: INBOX exists and is empty; any other name does not exist. */
export function select(o: Out, cmd: Command): void {
  const { tag, name, args } = cmd;
  const mbox = astringArg(args[0]);
  if (mbox === null) return void o.bad(tag, `${name} wants a mailbox name`);
  if (!isInbox(mbox)) {
    // RFC 3501 §6.3.1: a failed SELECT leaves the selected state.
    o.state.phase = "authenticated";
    o.state.selected = null;
    return void o.no(tag, "Mailbox does not exist", "NONEXISTENT");
  }
  const readOnly = name === "EXAMINE";
  o.data(`FLAGS (${FLAGS})`);
  o.replies.push({ type: "untagged", status: "OK", code: "PERMANENTFLAGS ()", text: "No permanent flags" });
  o.data("0 EXISTS").data("0 RECENT");
  o.replies.push({
    type: "untagged",
    status: "OK",
    code: `UIDVALIDITY ${INBOX_STATUS.UIDVALIDITY}`,
    text: "UIDs valid",
  });
  o.replies.push({
    type: "untagged",
    status: "OK",
    code: `UIDNEXT ${INBOX_STATUS.UIDNEXT}`,
    text: "Predicted next UID",
  });
  o.state.phase = "selected";
  o.state.selected = { name: "INBOX", readOnly };
  o.ok(tag, `${name} completed`, readOnly ? "READ-ONLY" : "READ-WRITE");
}

/** STATUS of INBOX, from {@link INBOX_STATUS}. */
export function status(o: Out, cmd: Command): void {
  const { tag, args } = cmd;
  const mbox = astringArg(args[0]);
  const items = args[1];
  if (mbox === null || items === undefined || items.type !== "list" || items.items.length === 0) {
    return void o.bad(tag, "STATUS wants a mailbox and a list of items");
  }
  if (!isInbox(mbox)) return void o.no(tag, "Mailbox does not exist", "NONEXISTENT");
  const parts: string[] = [];
  for (const it of items.items) {
    const key = it.type === "atom" ? it.value.toUpperCase() : "";
    const v = INBOX_STATUS[key];
    if (v === undefined) return void o.bad(tag, `Unknown STATUS item ${tokenText(it) ?? "(list)"}`);
    parts.push(`${key} ${v}`);
  }
  o.data(`STATUS "INBOX" (${parts.join(" ")})`).ok(tag, "STATUS completed");
  return;
}

/** The text of an atom or string argument; null for a list or a missing one. */
export function astringArg(t: Token | undefined): string | null {
  if (t === undefined || t.type === "list") return null;
  return t.value;
}

/** GETMETADATA: server entries from the config; INBOX has none; other mailboxes do not exist. */
export function getMetadata(cfg: SessionConfig, o: Out, cmd: Command): void {
  let req;
  try {
    req = parseGetMetadata(cmd.args);
  } catch (e) {
    if (e instanceof SyntaxError) return void o.bad(cmd.tag, e.message);
    throw e;
  }
  let store: ReadonlyMap<string, string>;
  if (req.mailbox === "") store = cfg.entries;
  else if (isInbox(req.mailbox)) store = new Map();
  else return void o.no(cmd.tag, "Mailbox does not exist", "NONEXISTENT");
  const found = lookupMetadata(store, req);
  if (found.entries.length > 0) o.replies.push({ type: "metadata", mailbox: req.mailbox, entries: found.entries });
  if (found.longEntries !== undefined) {
    o.ok(cmd.tag, "GETMETADATA completed", `METADATA LONGENTRIES ${found.longEntries}`);
  } else o.ok(cmd.tag, "GETMETADATA completed");
}

/**
 * SETMETADATA: server entries are the operator's (read-only, spec §4.3 item
 * 5); we keep no private entries, which core only logs (`/private/devicetoken`).
 */
export function setMetadataReply(
  tag: string,
  req: { mailbox: string; values: { name: string }[] },
  mailboxExists: (m: string) => boolean,
): Reply {
  if (req.mailbox !== "" && !mailboxExists(req.mailbox)) {
    return { type: "tagged", tag, status: "NO", code: "NONEXISTENT", text: "Mailbox does not exist" };
  }
  if (req.values.some((v) => v.name.toLowerCase().startsWith("/private"))) {
    return { type: "tagged", tag, status: "NO", code: "METADATA NOPRIVATE", text: "Private entries are not supported" };
  }
  return { type: "tagged", tag, status: "NO", code: "NOPERM", text: "Shared entries are read-only" };
}

/** SETMETADATA: refused (see {@link setMetadataReply}), after checking the syntax. */
export function setMetadata(o: Out, cmd: Command): void {
  let req;
  try {
    req = parseSetMetadata(cmd.args);
  } catch (e) {
    if (e instanceof SyntaxError) return void o.bad(cmd.tag, e.message);
    throw e;
  }
  o.state.errors = 0;
  o.replies.push(setMetadataReply(cmd.tag, req, isInbox));
}

/** LIST and LSUB: INBOX when a pattern matches it; `""` asks for the hierarchy delimiter. */
export function list(o: Out, cmd: Command): void {
  // RFC 5258 extended LIST: skip selection options before the reference and RETURN options after the pattern.
  const args = cmd.args[0]?.type === "list" ? cmd.args.slice(1) : cmd.args;
  const ref = astringArg(args[0]);
  const patTok = args[1];
  if (ref === null || patTok === undefined) return void o.bad(cmd.tag, `${cmd.name} wants a reference and a pattern`);
  const patterns = patTok.type === "list" ? patTok.items.map(astringArg) : [astringArg(patTok)];
  if (patterns.some((p) => p === null)) return void o.bad(cmd.tag, "Invalid pattern");
  if (args.length > 2 && !isAtom(args[2], "RETURN")) return void o.bad(cmd.tag, "Too many arguments");
  if (patterns.length === 1 && patterns[0] === "") {
    o.data(`${cmd.name} (\\Noselect) "/" ""`);
  } else if (patterns.some((p) => listMatch(ref + p!, "INBOX"))) {
    o.data(`${cmd.name} (\\HasNoChildren) "/" ${astring("INBOX")}`);
  }
  o.ok(cmd.tag, `${cmd.name} completed`);
}
