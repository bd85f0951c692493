/**
 * @module
 * The top-level `access` key (upstream's `AccessConfig`: `"everyone"`, or a
 * table with one of `allowlist`, `denylist`, `http`, `shared_token`) and its
 * environment overrides `IROH_RELAY_HTTP_BEARER_TOKEN` and
 * `IROH_RELAY_ACCESS_TOKEN`. Pure; the policy itself is `relay/server/access.ts`.
 */

import { parseKeyText } from "./key_text.ts";
import { ConfigError, isTable, Reader, show } from "./reader.ts";
import { closestKey } from "./suggest.ts";

/** Access configuration, as validated from the TOML `access` key. */
export type AccessConfig =
  | { mode: "everyone" }
  | { mode: "allowlist"; keys: Uint8Array[] }
  | { mode: "denylist"; keys: Uint8Array[] }
  | { mode: "http"; url: string; bearerToken?: string; maxInFlight?: number }
  | { mode: "shared_token"; tokens: string[] };

/** Reads `access` (absent: everyone). */
export function readAccess(r: Reader, env: Record<string, string | undefined>): AccessConfig {
  const v = r.raw("access");
  let access: AccessConfig;
  if (v === undefined || v === "everyone") {
    access = { mode: "everyone" };
  } else if (typeof v === "string") {
    throw new ConfigError(
      "access",
      `expected "everyone" or a table (allowlist, denylist, http, shared_token), got "${v}"`,
    );
  } else if (isTable(v)) {
    const variants = Object.keys(v);
    if (variants.length !== 1) {
      throw new ConfigError(
        "access",
        `expected exactly one of allowlist, denylist, http, shared_token; got ${variants.join(", ") || "none"}`,
      );
    }
    const kind = variants[0]!;
    const a = new Reader(v, "access");
    switch (kind) {
      case "allowlist":
      case "denylist": {
        const ids = a.strings(kind)!;
        const keys = ids.map((id, i) => {
          try {
            return parseKeyText(id);
          } catch (e) {
            throw new ConfigError(`access.${kind}[${i}]`, (e as Error).message);
          }
        });
        access = { mode: kind, keys };
        break;
      }
      case "http": {
        const h = a.table("http")!;
        const url = h.str("url");
        if (url === undefined) throw new ConfigError("access.http.url", "is required");
        try {
          new URL(url);
        } catch {
          throw new ConfigError("access.http.url", `"${url}" is not a URL`);
        }
        // Read the file's token even when the environment overrides it, so it is not taken for an unknown key.
        const fileToken = h.str("bearer_token");
        const bearerToken = env["IROH_RELAY_HTTP_BEARER_TOKEN"] ?? fileToken;
        // Ours, not upstream's: requests to the hook at once (default 64 in relay/server/access.ts).
        const maxInFlight = h.int("max_in_flight", { min: 1, max: 65536 });
        for (const k of h.unknownNames()) {
          const near = closestKey(k, h.known());
          throw new ConfigError(h.key(k), `unknown key${near ? ` (did you mean \`${h.key(near)}\`?)` : ""}`);
        }
        access = {
          mode: "http",
          url,
          ...(bearerToken ? { bearerToken } : {}),
          ...(maxInFlight !== undefined ? { maxInFlight } : {}),
        };
        break;
      }
      case "shared_token": {
        const tokens = a.strings("shared_token")!;
        if (tokens.length === 0) throw new ConfigError("access.shared_token", "must list at least one token");
        tokens.forEach((tok, i) => {
          if (tok === "") throw new ConfigError(`access.shared_token[${i}]`, "must not be empty");
        });
        access = { mode: "shared_token", tokens };
        break;
      }
      default:
        throw new ConfigError(
          `access.${kind}`,
          "unknown access mode: expected allowlist, denylist, http or shared_token",
        );
    }
  } else {
    throw new ConfigError("access", `expected "everyone" or a table, got ${show(v)}`);
  }
  const envToken = env["IROH_RELAY_ACCESS_TOKEN"];
  if (envToken !== undefined) {
    if (envToken === "") throw new ConfigError("IROH_RELAY_ACCESS_TOKEN", "must not be empty");
    access = { mode: "shared_token", tokens: [envToken] };
  }
  return access;
}
