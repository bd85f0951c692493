/**
 * @module
 * Who may use the relay, decided after the client proved its key (spec §4
 * "Access control"): `everyone`, `allowlist`, `denylist`, `http` (ask an
 * external service), `shared_token` (1.x; bearer token or `?token=`).
 *
 * The `http` hook is an outbound dependency a peer can make us call once per
 * handshake, so it is bounded like one: at most `max_in_flight` requests
 * at once (default {@link ACCESS_HTTP_MAX_IN_FLIGHT}) with a short queue
 * behind them ({@link AccessHttpGate}; beyond it a handshake is refused at
 * once), concurrent checks of one key share one request (a replayed
 * handshake costs one), no redirects (a 3xx is a failure), a timeout
 * covering the body, and at most {@link ACCESS_HTTP_MAX_BODY_BYTES} of
 * body read. A check has three outcomes ({@link AccessVerdict}): a
 * failure of the hook is `unavailable`, not `deny`, so a reload re-check
 * keeps connected clients when the hook is down, while new connections
 * fail closed.
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

/** Time allowed for the `http` access hook to answer, body included, in ms (queueing included). */
export const ACCESS_HTTP_TIMEOUT_MS = 5_000;
/** Default cap of requests to the hook at once (`access.http.max_in_flight`). */
export const ACCESS_HTTP_MAX_IN_FLIGHT = 64;
/** Checks waiting for a free request slot, per allowed request; beyond it a handshake is refused at once. */
export const ACCESS_HTTP_QUEUE_FACTOR = 4;
/** Most body bytes read from the hook (the answer is `true`); more is a failure. */
export const ACCESS_HTTP_MAX_BODY_BYTES = 64 * 1024;

/** Outcome of a check: `unavailable` when the policy could not decide (the http hook failed). */
export type AccessVerdict = "allow" | "deny" | "unavailable";

/** Why an http check failed (`access_http_failures_total{reason}`). */
export const ACCESS_HTTP_FAILURES = ["busy", "timeout", "network", "redirect", "status", "body_too_large"] as const;
/** One of {@link ACCESS_HTTP_FAILURES}. */
export type AccessHttpFailure = typeof ACCESS_HTTP_FAILURES[number];

/** A compiled access policy. */
export interface AccessPolicy {
  /** The configured mode name, for logs. */
  readonly mode: AccessConfig["mode"];
  /** Decides; never rejects. */
  check(req: AccessRequest): AccessVerdict | Promise<AccessVerdict>;
  /** True if the client may connect (`unavailable` refuses: new connections fail closed). Never rejects. */
  allows(req: AccessRequest): boolean | Promise<boolean>;
}

/**
 * The cap on requests to the http hook, shared by every policy compiled
 * over a service's life (a reload must not open a second set of slots), and
 * its counters. A check waits in a FIFO queue of bounded length for a slot;
 * when the queue is full it is refused at once.
 */
export class AccessHttpGate {
  /** Requests running now (`access_http_checks_in_flight`). */
  inFlight = 0;
  /** Failures by reason (`access_http_failures_total`). */
  readonly failures: Record<AccessHttpFailure, number> = {
    busy: 0,
    timeout: 0,
    network: 0,
    redirect: 0,
    status: 0,
    body_too_large: 0,
  };
  /** Most requests at once. */
  max: number;
  /** Waiters in arrival order; each returns false if it gave up (its entry is then skipped). */
  #queue: (() => boolean)[] = [];
  #head = 0;
  /** Waiters that have not given up. */
  #waiting = 0;

  /** @param max most requests at once */
  constructor(max = ACCESS_HTTP_MAX_IN_FLIGHT) {
    this.max = max;
  }

  /** Checks waiting for a slot. */
  get queued(): number {
    return this.#waiting;
  }

  /**
   * Resolves true once a slot is taken (call {@link release} after), false
   * if the queue is full or `signal` fires first.
   */
  acquire(signal: AbortSignal): Promise<boolean> {
    if (this.inFlight < this.max && this.#waiting === 0) {
      this.inFlight++;
      return Promise.resolve(true);
    }
    if (this.queued >= this.max * ACCESS_HTTP_QUEUE_FACTOR || signal.aborted) return Promise.resolve(false);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    let waiting = true;
    const onAbort = () => {
      if (!waiting) return;
      waiting = false;
      this.#waiting--;
      resolve(false);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    this.#waiting++;
    this.#queue.push(() => {
      signal.removeEventListener("abort", onAbort);
      if (!waiting) return false;
      waiting = false;
      this.#waiting--;
      this.inFlight++;
      resolve(true);
      return true;
    });
    return promise;
  }

  /** Frees a slot and hands it to the oldest waiting check still waiting. */
  release(): void {
    this.inFlight--;
    while (this.inFlight < this.max && this.#head < this.#queue.length) {
      const next = this.#queue[this.#head++]!;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      if (next()) break;
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    }
  }
}

/** Compares two strings in time independent of where they first differ. */
function sameToken(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** A policy from a plain yes/no function (the local modes never fail). */
function local(mode: AccessConfig["mode"], allows: (r: AccessRequest) => boolean): AccessPolicy {
  return { mode, allows, check: (r) => allows(r) ? "allow" : "deny" };
}

/**
 * Reads at most `max` bytes of `res`'s body as text; null (and the body
 * cancelled) if it is longer.
 */
async function boundedText(res: Response, max: number): Promise<string | null> {
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > max) {
    await res.body?.cancel().catch(() => {});
    return null;
  }
  if (res.body === null) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > max) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return new TextDecoder().decode(all);
}

/** Dependencies of {@link accessPolicy}. */
export interface AccessDeps {
  /** `fetch` for the http mode. */
  fetch?: typeof fetch;
  /** Failures of the http hook (the caller rate-limits: a peer can cause them). */
  warn?: (msg: string) => void;
  /** Shared request cap and counters of the http mode; default a private one. */
  gate?: AccessHttpGate;
  /** Deadline of one http check, queueing and body included, ms. Default {@link ACCESS_HTTP_TIMEOUT_MS}. */
  timeoutMs?: number;
}

/**
 * Builds a policy from configuration.
 *
 * @param cfg validated access configuration
 * @param deps `fetch`, failure reporting and the request cap of the http mode
 */
export function accessPolicy(cfg: AccessConfig, deps: AccessDeps = {}): AccessPolicy {
  switch (cfg.mode) {
    case "everyone":
      return local("everyone", () => true);
    case "allowlist": {
      const set = new Set(cfg.keys.map(keyId));
      return local("allowlist", (r) => set.has(keyId(r.key)));
    }
    case "denylist": {
      const set = new Set(cfg.keys.map(keyId));
      return local("denylist", (r) => !set.has(keyId(r.key)));
    }
    case "shared_token": {
      const tokens = cfg.tokens;
      return local("shared_token", (r) => r.token !== undefined && tokens.some((t) => sameToken(t, r.token!)));
    }
    case "http":
      return httpPolicy(cfg, deps);
  }
}

function httpPolicy(cfg: AccessConfig & { mode: "http" }, deps: AccessDeps): AccessPolicy {
  const doFetch = deps.fetch ?? fetch;
  const gate = deps.gate ?? new AccessHttpGate(cfg.maxInFlight);
  const timeoutMs = deps.timeoutMs ?? ACCESS_HTTP_TIMEOUT_MS;
  /** Checks running, by key: a handshake replayed on many connections costs one request. */
  const pending = new Map<string, Promise<AccessVerdict>>();
  const fail = (reason: AccessHttpFailure, detail: string): AccessVerdict => {
    gate.failures[reason]++;
    deps.warn?.(`access http hook ${cfg.url} failed (${reason}): ${detail}`);
    return "unavailable";
  };
  const ask = async (nodeId: string): Promise<AccessVerdict> => {
    const signal = AbortSignal.timeout(timeoutMs);
    if (!await gate.acquire(signal)) {
      return fail("busy", `${gate.max} requests in flight and ${gate.queued} waiting`);
    }
    try {
      const headers: Record<string, string> = { "X-Iroh-NodeId": nodeId };
      if (cfg.bearerToken) headers["Authorization"] = `Bearer ${cfg.bearerToken}`;
      const res = await doFetch(cfg.url, { method: "POST", headers, signal, redirect: "manual" });
      if (res.status >= 300 && res.status < 400 || res.type === "opaqueredirect") {
        await res.body?.cancel().catch(() => {});
        return fail("redirect", `status ${res.status}; redirects are not followed`);
      }
      const body = await boundedText(res, ACCESS_HTTP_MAX_BODY_BYTES);
      if (body === null) return fail("body_too_large", `answer over ${ACCESS_HTTP_MAX_BODY_BYTES} bytes`);
      if (res.status === 200) return body === "true" ? "allow" : "deny";
      // An explicit refusal; any other status says nothing about this client.
      if (res.status === 401 || res.status === 403) return "deny";
      return fail("status", `status ${res.status}`);
    } catch (e) {
      if (signal.aborted) return fail("timeout", `no answer within ${timeoutMs} ms`);
      return fail("network", (e as Error).message);
    } finally {
      gate.release();
    }
  };
  const check = (r: AccessRequest): Promise<AccessVerdict> => {
    const nodeId = keyHex(r.key);
    let p = pending.get(nodeId);
    if (p === undefined) {
      p = ask(nodeId).finally(() => pending.delete(nodeId));
      pending.set(nodeId, p);
    }
    return p;
  };
  return { mode: "http", check, allows: async (r) => await check(r) === "allow" };
}
