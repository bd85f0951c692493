/**
 * @module
 * Who may use the relay, decided after the client proved its key (spec §4
 * "Access control"): `everyone`, `allowlist`, `denylist`, `http` (ask an
 * external service), `shared_token` (1.x; bearer token or `?token=`).
 *
 * `fetch` is injected for the `http` mode so tests need no server.
 */

import type { AccessConfig } from "../../config/mod.ts";
import { keyHex, keyId } from "../proto/public_key.ts";

export type { AccessConfig };

/** What the handshake knows when it asks. */
export interface AccessRequest {
  /** Authenticated key of the client. */
  key: Uint8Array;
  /** Token presented in `Authorization: Bearer` or `?token=`, if any. */
  token?: string;
}

/** Time allowed for the `http` access hook to answer, in ms. */
export const ACCESS_HTTP_TIMEOUT_MS = 5_000;

/** A compiled access policy. */
export interface AccessPolicy {
  /** The configured mode name, for logs. */
  readonly mode: AccessConfig["mode"];
  /** Resolves true if the client may connect. Never rejects. */
  allows(req: AccessRequest): boolean | Promise<boolean>;
}

/** Compares two strings in time independent of where they first differ. */
function sameToken(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * Builds a policy from configuration.
 *
 * @param cfg validated access configuration
 * @param deps `fetch` for the http mode; `log` for its failures
 */
export function accessPolicy(
  cfg: AccessConfig,
  deps: { fetch?: typeof fetch; warn?: (msg: string) => void } = {},
): AccessPolicy {
  switch (cfg.mode) {
    case "everyone":
      return { mode: "everyone", allows: () => true };
    case "allowlist": {
      const set = new Set(cfg.keys.map(keyId));
      return { mode: "allowlist", allows: (r) => set.has(keyId(r.key)) };
    }
    case "denylist": {
      const set = new Set(cfg.keys.map(keyId));
      return { mode: "denylist", allows: (r) => !set.has(keyId(r.key)) };
    }
    case "shared_token": {
      const tokens = cfg.tokens;
      return {
        mode: "shared_token",
        allows: (r) => r.token !== undefined && tokens.some((t) => sameToken(t, r.token!)),
      };
    }
    case "http": {
      const doFetch = deps.fetch ?? fetch;
      return {
        mode: "http",
        async allows(r) {
          const headers: Record<string, string> = { "X-Iroh-NodeId": keyHex(r.key) };
          if (cfg.bearerToken) headers["Authorization"] = `Bearer ${cfg.bearerToken}`;
          try {
            const res = await doFetch(cfg.url, {
              method: "POST",
              headers,
              signal: AbortSignal.timeout(ACCESS_HTTP_TIMEOUT_MS),
            });
            const body = await res.text();
            return res.status === 200 && body === "true";
          } catch (e) {
            deps.warn?.(`access http hook ${cfg.url} failed: ${(e as Error).message}`);
            return false;
          }
        },
      };
    }
  }
}
