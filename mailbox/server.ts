/**
 * @module
 * The mailbox's HTTP side: one fetch-style handler for everything under
 * `/_matrix/federation/v1/`, serving Dendrite's two relay routes (spec
 * discovery-and-mailbox.md §2.3, §2.4) with our fixes for §2.7.
 *
 * Per request: route and method → body size (413) → Content-Type and UTF-8
 * (400) → JSON (400) → X-Matrix signature (400/401) → the route:
 * - `send_relay`: user id (400) → recipient is a P2P name (400) → sender
 *   rate (429) → events and limits (400) → store: stored or duplicate (200
 *   `null`), over a quota (507);
 * - `relay_txn`: user id (400) → the signer owns this mailbox (403) →
 *   `entry_id` (400) → acknowledge (own entries only) and return the oldest
 *   waiting entry (200).
 *
 * Every refusal has a status, a JSON body naming the reason, and a count in
 * `mailbox_refused_total{reason}`. Status codes differ from Dendrite only
 * where Dendrite answers a client error with 500 (bad `relay_txn` JSON, a
 * negative `entry_id`): 400 here, as Dendrite's own design doc says; its
 * client treats any non-200 alike.
 */

import { JsonSyntaxError, type JsonValue, parseJson } from "./proto/canonical_json.ts";
import { isP2PServerName, parseUserId } from "./proto/identifiers.ts";
import { authenticate, type VerifyEd25519 } from "./proto/x_matrix.ts";
import {
  BodyError,
  EMPTY_RELAY_TXN,
  matchRoute,
  matrixError,
  messageError,
  parseRelayEvents,
  relayTxnEntryId,
  relayTxnReply,
  storedTransaction,
} from "./proto/relay_api.ts";
import type { DepositLimits, MailboxStore } from "./store.ts";
import { MailboxMetrics, type RefusalReason } from "./metrics.ts";
import { SenderLimiter } from "./sender_limit.ts";
import { type Logger, readAtMost, silentLogger } from "./_deps.ts";

/** Limits of {@link MailboxServer}. */
export interface MailboxLimits extends DepositLimits {
  /** How long an entry waits before it is deleted unread, ms. */
  expiryMs: number;
  /** Largest request body, bytes. */
  maxBodyBytes: number;
  /** Deposits per second per sender. */
  senderPerSecond: number;
  /** Deposits a sender may make at once. */
  senderBurst: number;
}

/** Options of {@link MailboxServer}. */
export interface MailboxServerOptions {
  /** Where entries live. */
  store: MailboxStore;
  /** Names accepted as X-Matrix `destination` (empty: any). */
  serverNames: readonly string[];
  /** Quotas and rates. */
  limits: MailboxLimits;
  /** Ed25519 check (default: WebCrypto). */
  verify?: VerifyEd25519;
  /** Clock, ms since the epoch (default `Date.now`). */
  now?: () => number;
  /** Logger. */
  log?: Logger;
}

/** WebCrypto Ed25519 verification; a key that is not a valid point verifies nothing. */
export const webCryptoVerify: VerifyEd25519 = async (publicKey, message, signature) => {
  try {
    const key = await crypto.subtle.importKey("raw", publicKey as BufferSource, { name: "Ed25519" }, false, [
      "verify",
    ]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature as BufferSource, message as BufferSource);
  } catch {
    return false;
  }
};

const JSON_HEADERS = { "Content-Type": "application/json" };
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Default value of {@link MailboxLimits}: see config/mailbox.ts for the reasons. */
export const DEFAULT_MAILBOX_LIMITS: MailboxLimits = {
  maxEntries: 1000,
  maxBytes: 16 * 1024 * 1024,
  maxTotalBytes: 1024 * 1024 * 1024,
  expiryMs: 7 * 24 * 3600 * 1000,
  maxBodyBytes: 1024 * 1024,
  senderPerSecond: 20,
  senderBurst: 200,
};

/** See the module doc. */
export class MailboxServer {
  /** Counters and gauges. */
  readonly metrics: MailboxMetrics = new MailboxMetrics();
  readonly #o: MailboxServerOptions;
  readonly #verify: VerifyEd25519;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #senders: SenderLimiter;
  #statsAt = -Infinity;

  /**
   * @param opts see {@link MailboxServerOptions}
   * @throws {TypeError} without a store (Dendrite's `TestCreateInvalidRelayPublicRoutesPanics`)
   */
  constructor(opts: MailboxServerOptions) {
    if (!opts || !opts.store) throw new TypeError("MailboxServer needs a store");
    this.#o = opts;
    this.#verify = opts.verify ?? webCryptoVerify;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log ?? silentLogger;
    this.#senders = new SenderLimiter({ perSecond: opts.limits.senderPerSecond, burst: opts.limits.senderBurst });
  }

  #refuse(reason: RefusalReason, status: number, body: string, headers: Record<string, string> = {}): Response {
    this.metrics.refused[reason]++;
    return new Response(body, { status, headers: { ...JSON_HEADERS, ...headers } });
  }

  /**
   * Answers one request under `/_matrix/federation/v1/`.
   * @param req the request
   * @param body its body when the transport carries it aside (a GET body); else read from `req`
   */
  async handle(req: Request, body?: Uint8Array): Promise<Response> {
    const url = new URL(req.url);
    const route = matchRoute(req.method, url.pathname);
    if (route === null) {
      await req.body?.cancel();
      return new Response(matrixError("M_UNRECOGNIZED", "Unrecognized request"), {
        status: 404,
        headers: JSON_HEADERS,
      });
    }
    if (route.route === "bad_method") {
      await req.body?.cancel();
      return this.#refuse("bad_request", 405, matrixError("M_UNRECOGNIZED", `Method not allowed: use ${route.allow}`), {
        Allow: route.allow,
      });
    }
    if (route.route === "bad_path") {
      await req.body?.cancel();
      return this.#refuse("bad_request", 400, matrixError("M_UNRECOGNIZED", "badly encoded query params"));
    }
    const max = this.#o.limits.maxBodyBytes;
    const announced = Number(req.headers.get("content-length") ?? "0");
    if (announced > max) {
      await req.body?.cancel();
      return this.#refuse("too_large", 413, matrixError("M_TOO_LARGE", `Request body over ${max} bytes`));
    }
    const bytes = body ?? await readBounded(req, max);
    if (bytes === null) {
      return this.#refuse("too_large", 413, matrixError("M_TOO_LARGE", `Request body over ${max} bytes`));
    }
    let content: JsonValue | undefined;
    if (bytes.length > 0) {
      const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
      if (type !== "application/json") {
        return this.#refuse(
          "bad_request",
          400,
          messageError(`Bad Request: the request must be "application/json", not ${JSON.stringify(type)}`),
        );
      }
      let text: string;
      try {
        text = UTF8.decode(bytes);
      } catch {
        return this.#refuse("bad_request", 400, messageError("Bad Request: the body is not valid UTF-8"));
      }
      try {
        content = parseJson(text);
      } catch (e) {
        if (!(e instanceof JsonSyntaxError)) throw e;
        return this.#refuse(
          "bad_request",
          400,
          matrixError("M_NOT_JSON", `The request body is not valid JSON: ${e.message}`),
        );
      }
    }
    const auth = await authenticate(req.headers.get("authorization") === null ? [] : authorizationHeaders(req), {
      method: req.method,
      uri: url.pathname + url.search,
      ...(content !== undefined ? { content } : {}),
    }, { serverNames: this.#o.serverNames, verify: this.#verify });
    if (!auth.ok) return this.#refuse("auth", auth.status, messageError(auth.message));
    const user = parseUserId(route.userId);
    if (user === null) {
      return this.#refuse("bad_request", 400, matrixError("M_INVALID_USERNAME", "Username was invalid"));
    }
    try {
      return route.route === "send_relay"
        ? await this.#sendRelay(auth.origin, route.txnId, user.domain, content ?? null)
        : await this.#relayTxn(auth.origin, user.domain, content, url.searchParams.get("entry_id"));
    } catch (e) {
      if (e instanceof BodyError) return this.#refuse("bad_request", 400, matrixError(e.errcode, e.message));
      this.#log.error(`${route.route}: store failed: ${(e as Error).message}`);
      return this.#refuse(
        "store",
        500,
        matrixError(
          "M_UNKNOWN",
          route.route === "send_relay"
            ? "could not store the transaction for forwarding"
            : "could not read the mailbox",
        ),
      );
    }
  }

  async #sendRelay(origin: string, txnId: string, recipient: string, content: JsonValue): Promise<Response> {
    if (!isP2PServerName(recipient)) {
      return this.#refuse(
        "bad_request",
        400,
        matrixError(
          "M_INVALID_USERNAME",
          `Recipient server ${
            JSON.stringify(recipient)
          } is not a P2P server name (64 lowercase hex digits): it could never collect its mail`,
        ),
      );
    }
    const now = this.#now();
    const wait = this.#senders.take(origin, now);
    if (wait > 0) {
      return this.#refuse(
        "rate",
        429,
        JSON.stringify({
          errcode: "M_LIMIT_EXCEEDED",
          error: `Too many deposits from ${origin}`,
          retry_after_ms: wait,
        }),
        { "Retry-After": String(Math.ceil(wait / 1000)) },
      );
    }
    const events = parseRelayEvents(content);
    const body = storedTransaction(origin, events);
    const size = new TextEncoder().encode(body).length;
    const l = this.#o.limits;
    const r = await this.#o.store.deposit(
      { recipient, origin, txnId, body, bytes: size, now, expiresAt: now + l.expiryMs },
      l,
    );
    if (r.status === "full") {
      const what = r.quota === "entries"
        ? `${l.maxEntries} entries`
        : r.quota === "bytes"
        ? `${l.maxBytes} bytes`
        : `the relay's total of ${l.maxTotalBytes} bytes`;
      return this.#refuse(
        "quota",
        507,
        matrixError(
          "M_RESOURCE_LIMIT_EXCEEDED",
          `Mailbox of ${recipient} is full (${what}); try again after it is collected`,
        ),
      );
    }
    if (r.status === "stored") {
      this.metrics.c.stored++;
      this.metrics.queuedEntries++;
      this.metrics.queuedBytes += size;
    } else this.metrics.c.duplicates++;
    await this.#refreshSoon(now);
    return new Response("null", { status: 200, headers: JSON_HEADERS });
  }

  async #relayTxn(
    origin: string,
    mailbox: string,
    content: JsonValue | undefined,
    query: string | null,
  ): Promise<Response> {
    // Dendrite's gap (§2.7): it never compared the signer with the mailbox it reads.
    if (origin !== mailbox) {
      return this.#refuse(
        "forbidden",
        403,
        matrixError("M_FORBIDDEN", `${origin} may only collect its own mailbox, not ${mailbox}'s`),
      );
    }
    const ack = relayTxnEntryId(content, query);
    const now = this.#now();
    const r = await this.#o.store.next(mailbox, ack, now);
    if (r.acked) {
      this.metrics.c.delivered++;
      this.metrics.queuedEntries = Math.max(0, this.metrics.queuedEntries - 1);
    }
    if (r.expired > 0) this.metrics.c.expired += r.expired;
    await this.#refreshSoon(now);
    if (r.entry === null) return new Response(EMPTY_RELAY_TXN, { status: 200, headers: JSON_HEADERS });
    this.metrics.c.served++;
    return new Response(relayTxnReply(r.entry.id, r.entry.body), { status: 200, headers: JSON_HEADERS });
  }

  /** Deletes expired entries (up to `max`); returns how many. */
  async sweep(max = 10_000): Promise<number> {
    const n = await this.#o.store.expire(this.#now(), max);
    this.metrics.c.expired += n;
    await this.refreshStats();
    return n;
  }

  /**
   * Re-reads the totals at most once per second (other instances sharing a
   * Redis change them too); in between the gauges move with this instance's
   * own deposits and acknowledgements.
   */
  async #refreshSoon(now: number): Promise<void> {
    if (now - this.#statsAt < 1000 && now >= this.#statsAt) return;
    this.#statsAt = now;
    await this.refreshStats();
  }

  /** Re-reads the queue totals from the store into the gauges. */
  async refreshStats(): Promise<void> {
    const s = await this.#o.store.stats();
    this.metrics.queuedEntries = s.entries;
    this.metrics.queuedBytes = s.bytes;
  }
}

/** Every `Authorization` header value (the Fetch API joins repeated headers with ", "). */
function authorizationHeaders(req: Request): string[] {
  const joined = req.headers.get("authorization") ?? "";
  // Split before each scheme token: X-Matrix params never contain ", X-Matrix ".
  return joined.split(/,\s*(?=[A-Za-z][A-Za-z0-9-]*\s+[A-Za-z0-9_-]+=)/);
}

/** Reads at most `max` bytes of the body; `null` if it is longer. */
async function readBounded(req: Request, max: number): Promise<Uint8Array | null> {
  return req.body === null ? new Uint8Array(0) : await readAtMost(req.body, max);
}
