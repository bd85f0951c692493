/**
 * @module
 * Capability lists: what standalone mode advertises, and how proxy mode
 * rewrites the upstream's lists (spec §4.4).
 *
 * Proxy rewriting, on every list the upstream sends (greeting code,
 * `* CAPABILITY`, `[CAPABILITY …]` in tagged and untagged status lines):
 * - drop `COMPRESS=*`: once core sends `COMPRESS DEFLATE` the stream is
 *   deflated and we could no longer read it;
 * - drop `STARTTLS`: we cannot upgrade the client side (Deno has no
 *   server-side STARTTLS), and passing it through would hand the TLS
 *   handshake to the upstream, hiding everything from us;
 * - add `METADATA` when missing, because we answer the server entries.
 */

/** Capabilities before login in standalone mode. */
export const STANDALONE_PRE_LOGIN: readonly string[] = ["IMAP4rev1", "SASL-IR", "AUTH=PLAIN"];

/**
 * Capabilities after login in standalone mode. `METADATA` must be this exact
 * token: core ignores `METADATA-SERVER` (spec §1 item 1).
 */
export const STANDALONE_POST_LOGIN: readonly string[] = ["IMAP4rev1", "IDLE", "UNSELECT", "METADATA"];

/** True if a capability must not reach the client through the proxy. */
function dropped(cap: string): boolean {
  const u = cap.toUpperCase();
  return u.startsWith("COMPRESS=") || u === "STARTTLS";
}

/**
 * Rewrites one capability list for the proxy's client.
 *
 * @example
 * ```ts
 * import { rewriteCapabilities } from "./capability.ts";
 * const out = rewriteCapabilities(["IMAP4rev1", "COMPRESS=DEFLATE", "IDLE"]);
 * if (out.join(" ") !== "IMAP4rev1 IDLE METADATA") throw new Error(out.join(" "));
 * ```
 */
export function rewriteCapabilities(caps: readonly string[]): string[] {
  const out = caps.filter((c) => !dropped(c));
  if (!out.some((c) => c.toUpperCase() === "METADATA")) out.push("METADATA");
  return out;
}

/** What {@link rewriteCapabilityLine} found. */
export interface CapabilityRewrite {
  /** The line to send instead (without CRLF). */
  line: string;
  /** The upstream's own list, as sent. */
  upstream: string[];
}

/**
 * Rewrites a response line that carries a capability list: `* CAPABILITY …`,
 * or a status response (`* OK`, `* PREAUTH`, `* BYE`, `tag OK/NO/BAD`) with a
 * `[CAPABILITY …]` code.
 *
 * @param line one response line without CRLF (ASCII)
 * @returns the rewrite, or null when the line has no capability list
 */
export function rewriteCapabilityLine(line: string): CapabilityRewrite | null {
  const data = /^(\*[ ]+CAPABILITY)((?:[ ]+[^ ]+)*)[ ]*$/i.exec(line);
  if (data) {
    const upstream = data[2]!.trim().split(/ +/).filter((c) => c !== "");
    return { line: `${data[1]} ${rewriteCapabilities(upstream).join(" ")}`, upstream };
  }
  const code = /^([^ ]+[ ]+(?:OK|NO|BAD|PREAUTH|BYE)[ ]+\[CAPABILITY)([^\]]*)(\].*)$/i.exec(line);
  if (code) {
    const upstream = code[2]!.trim().split(/ +/).filter((c) => c !== "");
    return { line: `${code[1]} ${rewriteCapabilities(upstream).join(" ")}${code[3]}`, upstream };
  }
  return null;
}
