/**
 * @module
 * The access policy of a running relay: the configured {@link AccessPolicy}
 * (compiled from `[access]`, one {@link AccessHttpGate} shared across
 * reloads so in-flight hook requests stay bounded), the check a handshake
 * asks (never rejects: a throwing policy is `unavailable`), and the
 * re-check of connected clients after a reload. The policies themselves are
 * in `access.ts`; the core owns the clients and closes the revoked ones.
 */

import {
  ACCESS_HTTP_MAX_IN_FLIGHT,
  type AccessConfig,
  AccessHttpGate,
  type AccessPolicy,
  accessPolicy,
  type AccessVerdict,
} from "./access.ts";
import type { Client } from "./client.ts";
import type { RateLimitedLog } from "../../log/mod.ts";

/** Re-checks of connected clients running at once after an access reload: a reload must not flood the hook. */
export const ACCESS_RECHECK_CONCURRENCY = 8;

/** What an access reload did to the connected clients. */
export interface AccessRecheck {
  /** Connections asked about. */
  checked: number;
  /** Connections the new policy refused, closed. */
  revoked: number;
  /** Connections kept because the policy could not decide (the http hook failed). */
  kept: number;
}

/** The current access policy and its reloads; see the module doc. */
export class AccessControl {
  /** Bounds the http hook's requests (in flight, queue) and counts its failures. */
  readonly gate: AccessHttpGate = new AccessHttpGate();
  readonly #fetch: typeof fetch | undefined;
  readonly #peerLog: RateLimitedLog;
  #policy: AccessPolicy;
  /** Bumped by each reload, so an older reload's re-check stops. */
  #generation = 0;

  /**
   * @param cfg the `[access]` section
   * @param fetchFn injected `fetch` for the http mode
   * @param peerLog rate-limited log for hook failures (a peer can cause them)
   */
  constructor(cfg: AccessConfig, fetchFn: typeof fetch | undefined, peerLog: RateLimitedLog) {
    this.#fetch = fetchFn;
    this.#peerLog = peerLog;
    this.#policy = this.#compile(cfg);
  }

  #compile(cfg: AccessConfig): AccessPolicy {
    if (cfg.mode === "http") this.gate.max = cfg.maxInFlight ?? ACCESS_HTTP_MAX_IN_FLIGHT;
    return accessPolicy(cfg, {
      ...(this.#fetch ? { fetch: this.#fetch } : {}),
      gate: this.gate,
      warn: (m) => this.#peerLog.warn("access hook failed", m),
    });
  }

  /**
   * Replaces the policy, then re-checks `clients` a few at a time
   * ({@link ACCESS_RECHECK_CONCURRENCY}): those the new policy refuses are
   * closed; those it cannot decide about (the http hook is down, slow or
   * busy) are kept. A newer reload, or `stopped()` turning true, stops this
   * one's re-check.
   */
  async reload(cfg: AccessConfig, clients: Client[], stopped: () => boolean): Promise<AccessRecheck> {
    this.#policy = this.#compile(cfg);
    const gen = ++this.#generation;
    const result: AccessRecheck = { checked: 0, revoked: 0, kept: 0 };
    let next = 0;
    const worker = async () => {
      while (next < clients.length && gen === this.#generation && !stopped()) {
        const c = clients[next++]!;
        if (c.closed) continue;
        const verdict = await this.check(c.key, c.info.token);
        if (gen !== this.#generation) return;
        result.checked++;
        if (verdict === "deny") {
          result.revoked++;
          c.close("access revoked by configuration reload");
        } else if (verdict === "unavailable") {
          result.kept++;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(ACCESS_RECHECK_CONCURRENCY, clients.length) }, worker));
    return result;
  }

  /** Asks the policy; never rejects (a throwing policy is `unavailable`). */
  async check(key: Uint8Array, token: string | undefined): Promise<AccessVerdict> {
    try {
      return await this.#policy.check(token === undefined ? { key } : { key, token });
    } catch (e) {
      this.#peerLog.warn("access check failed", `access check failed: ${(e as Error).message}`);
      return "unavailable";
    }
  }
}
