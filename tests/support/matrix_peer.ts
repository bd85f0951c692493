/**
 * @module
 * A P2P Matrix server as the mailbox sees it, written from the specs and
 * NOT with the mailbox's code: its own canonical JSON (spec appendices:
 * keys sorted by code point, no whitespace, integers only), its own unpadded
 * Base64, Ed25519 from `node:crypto`, and X-Matrix headers as
 * gomatrixserverlib writes them (`X-Matrix origin="…",key="…",sig="…",destination="…"`).
 * Its server name is the hex of its public key, as in Dendrite's P2P demos.
 *
 * - {@link MatrixPeer.deposit}: `PUT send_relay` as Dendrite's sender does
 *   (`P2PSendTransactionToRelay`: the whole Transaction as body).
 * - {@link MatrixPeer.pull} / {@link MatrixPeer.sync}: `GET relay_txn` with
 *   a JSON body, and the paging loop of Dendrite's `PerformRelayServerSync`
 *   (start at 0, acknowledge with the last entry id, stop when
 *   `entries_queued` is false).
 * - {@link RelayList}: the sender's list of relays per destination
 *   (Dendrite's `federationsender_relay_servers` table) and the receiver's
 *   record of which relays it has synced (`retriever.go`).
 *
 * Requests go through a {@link PeerTransport}: a real socket (raw HTTP/1.1,
 * since `fetch` cannot send a GET body) or a handler called in-process.
 */

import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";

/** Dendrite's P2P key id. */
export const P2P_KEY_ID = "ed25519:dendrite-demo-yggdrasil";

/** Canonical JSON per the spec appendix; written independently of mailbox/proto. */
export function specCanonicalJson(v: unknown): string {
  if (v === null || typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new RangeError(`not an integer: ${v}`);
    return String(Object.is(v, -0) ? 0 : v);
  }
  if (Array.isArray(v)) return `[${v.map(specCanonicalJson).join(",")}]`;
  if (typeof v === "object") {
    const keys = Object.keys(v as object).filter((k) => (v as Record<string, unknown>)[k] !== undefined);
    // Sort by code point: compare arrays of code points.
    keys.sort((a, b) => {
      const x = [...a].map((c) => c.codePointAt(0)!);
      const y = [...b].map((c) => c.codePointAt(0)!);
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
      return x.length - y.length;
    });
    return `{${
      keys.map((k) => `${JSON.stringify(k)}:${specCanonicalJson((v as Record<string, unknown>)[k])}`).join(",")
    }}`;
  }
  throw new TypeError(`not JSON: ${typeof v}`);
}

/** RFC 4648 Base64 without padding (spec: "Unpadded Base64"). */
export function unpaddedBase64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/=+$/, "");
}

/** A request as built by the peer, before transport. */
export interface PeerRequest {
  method: string;
  uri: string;
  headers: [string, string][];
  body?: string;
}

/** A response: status and parsed JSON body (or the raw text if not JSON). */
export interface PeerResponse {
  status: number;
  json: unknown;
  text: string;
}

/** Carries a {@link PeerRequest} to the mailbox. */
export type PeerTransport = (req: PeerRequest) => Promise<PeerResponse>;

function toResponse(status: number, text: string): PeerResponse {
  let json: unknown = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status, json, text };
}

/** A transport over a real socket to `127.0.0.1:port` (one connection per request). */
export function socketTransport(port: number, host = "127.0.0.1"): PeerTransport {
  const enc = new TextEncoder();
  return async (req) => {
    const conn = await Deno.connect({ hostname: host, port });
    try {
      const body = req.body === undefined ? new Uint8Array(0) : enc.encode(req.body);
      let head = `${req.method} ${req.uri} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n`;
      for (const [k, v] of req.headers) head += `${k}: ${v}\r\n`;
      head += `Content-Length: ${body.length}\r\n\r\n`;
      const all = new Uint8Array([...enc.encode(head), ...body]);
      for (let off = 0; off < all.length;) off += await conn.write(all.subarray(off));
      const chunks: Uint8Array[] = [];
      const buf = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        chunks.push(buf.slice(0, n));
      }
      const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) throw new Error(`no response head: ${JSON.stringify(text.slice(0, 200))}`);
      return toResponse(Number(text.slice(9, 12)), text.slice(end + 4));
    } finally {
      try {
        conn.close();
      } catch {
        // closed by the server
      }
    }
  };
}

/** A transport calling a fetch-style handler in-process; a GET body goes as the second argument. */
export function handlerTransport(
  handle: (req: Request, body?: Uint8Array) => Promise<Response>,
  origin = "http://relay.test",
): PeerTransport {
  return async (req) => {
    const headers = new Headers();
    for (const [k, v] of req.headers) headers.append(k, v);
    const body = req.body === undefined ? undefined : new TextEncoder().encode(req.body);
    const inRequest = req.method !== "GET" && req.method !== "HEAD";
    const r = new Request(origin + req.uri, {
      method: req.method,
      headers,
      ...(inRequest && body ? { body } : {}),
    });
    const res = await handle(r, inRequest ? undefined : body ?? new Uint8Array(0));
    return toResponse(res.status, await res.text());
  };
}

/** A relay_txn reply, typed loosely as the spec describes it. */
export interface RelayTxnReply {
  transaction: { origin: string; origin_server_ts: number; pdus: unknown[] | null; edus?: unknown[] };
  entry_id?: number;
  entries_queued: boolean;
}

/** See the module doc. */
export class MatrixPeer {
  /** Hex of the public key: the server name. */
  readonly serverName: string;
  /** Key id used in headers. */
  keyId: string;
  readonly #key: KeyObject;

  private constructor(key: KeyObject, keyId: string) {
    this.#key = key;
    this.keyId = keyId;
    const spki = createPublicKey(key).export({ format: "der", type: "spki" });
    this.serverName = Array.from(spki.subarray(spki.length - 32), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** A fresh random key. */
  static generate(keyId = P2P_KEY_ID): MatrixPeer {
    return new MatrixPeer(generateKeyPairSync("ed25519").privateKey, keyId);
  }

  /** The key of a 32-byte seed (RFC 8410 PKCS#8 wrapping). */
  static fromSeed(seed: Uint8Array, keyId = P2P_KEY_ID): MatrixPeer {
    const der = new Uint8Array([
      ...[0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20],
      ...seed,
    ]);
    return new MatrixPeer(createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" }), keyId);
  }

  /** Unpadded Base64 Ed25519 signature of `bytes`. */
  signBytes(bytes: Uint8Array): string {
    return unpaddedBase64(new Uint8Array(sign(null, bytes, this.#key)));
  }

  /** The `Authorization` value for a request, as gomatrixserverlib writes it. */
  authorization(method: string, uri: string, destination: string, content?: unknown): string {
    const signed = specCanonicalJson({ content, destination, method, origin: this.serverName, uri });
    const sig = this.signBytes(new TextEncoder().encode(signed));
    return `X-Matrix origin="${this.serverName}",key="${this.keyId}",sig="${sig}",destination="${destination}"`;
  }

  /** A signed JSON request (body and `Content-Type` when `content` is given). */
  request(method: string, uri: string, destination: string, content?: unknown): PeerRequest {
    const headers: [string, string][] = [["Authorization", this.authorization(method, uri, destination, content)]];
    if (content === undefined) return { method, uri, headers };
    headers.push(["Content-Type", "application/json"]);
    return { method, uri, headers, body: JSON.stringify(content) };
  }

  /** `PUT send_relay/{txnID}/@user:{recipient}` with a whole Transaction as body. */
  depositRequest(
    destination: string,
    recipient: string,
    txnId: string,
    txn: { pdus?: unknown[]; edus?: unknown[] },
  ): PeerRequest {
    const uri = `/_matrix/federation/v1/send_relay/${encodeURIComponent(txnId)}/${
      encodeURIComponent(`@user:${recipient}`).replace(/%40/g, "@").replace(/%3A/g, ":")
    }`;
    return this.request("PUT", uri, destination, {
      origin: this.serverName,
      origin_server_ts: 1_700_000_000_000,
      pdus: txn.pdus ?? [],
      edus: txn.edus ?? [],
    });
  }

  /** Deposits one transaction. */
  deposit(
    t: PeerTransport,
    destination: string,
    recipient: string,
    txnId: string,
    txn: { pdus?: unknown[]; edus?: unknown[] },
  ): Promise<PeerResponse> {
    return t(this.depositRequest(destination, recipient, txnId, txn));
  }

  /** `GET relay_txn/@user:{mailbox}` with body `{"entry_id": N}` (mailbox defaults to our own). */
  pull(t: PeerTransport, destination: string, entryId: number, mailbox = this.serverName): Promise<PeerResponse> {
    return t(
      this.request("GET", `/_matrix/federation/v1/relay_txn/@user:${mailbox}`, destination, { entry_id: entryId }),
    );
  }

  /**
   * Dendrite's `PerformRelayServerSync`: pull until `entries_queued` is false,
   * each call acknowledging the previous entry. `onTxn` may throw to stop
   * (the last entry then stays unacknowledged, so it comes again).
   * @returns the calls made
   * @throws {Error} a non-200 reply, with its status and body
   */
  async sync(
    t: PeerTransport,
    destination: string,
    onTxn: (txn: RelayTxnReply["transaction"], entryId: number) => void | Promise<void>,
    opts: { maxCalls?: number } = {},
  ): Promise<number> {
    let entryId = 0;
    let calls = 0;
    const max = opts.maxCalls ?? 1_000_000;
    while (calls < max) {
      const r = await this.pull(t, destination, entryId);
      calls++;
      if (r.status !== 200) throw new Error(`relay_txn ${r.status}: ${r.text}`);
      const reply = r.json as RelayTxnReply;
      if (!reply.entries_queued) return calls;
      await onTxn(reply.transaction, reply.entry_id!);
      entryId = reply.entry_id!;
    }
    return calls;
  }
}

/**
 * The sender's relays per destination (Dendrite's
 * `federationsender_relay_servers`, unique on both columns) and the
 * receiver's record of relays synced (`retriever.go`).
 */
export class RelayList {
  readonly #relays = new Map<string, string[]>();
  /** Relays the receiver has synced successfully. */
  readonly queried = new Set<string>();

  /** Adds relays for `destination`, ignoring duplicates. */
  insert(destination: string, relays: readonly string[]): void {
    const list = this.#relays.get(destination) ?? [];
    for (const r of relays) if (!list.includes(r)) list.push(r);
    this.#relays.set(destination, list);
  }

  /** Relays of `destination` (empty for an unknown one). */
  get(destination: string): string[] {
    return [...(this.#relays.get(destination) ?? [])];
  }

  /** Removes the named relays of `destination`. */
  delete(destination: string, relays: readonly string[]): void {
    this.#relays.set(destination, this.get(destination).filter((r) => !relays.includes(r)));
  }

  /** Removes every relay of `destination`. */
  deleteAll(destination: string): void {
    this.#relays.delete(destination);
  }

  /**
   * The receiver's retriever: syncs every relay of `self` not yet synced;
   * a relay whose sync fails stays unmarked (retried next time).
   */
  async syncAll(
    self: MatrixPeer,
    transports: Map<string, PeerTransport>,
    onTxn: (txn: RelayTxnReply["transaction"], entryId: number, relay: string) => void,
  ): Promise<void> {
    for (const relay of this.get(self.serverName)) {
      if (this.queried.has(relay)) continue;
      try {
        await self.sync(transports.get(relay)!, relay, (txn, id) => onTxn(txn, id, relay));
        this.queried.add(relay);
      } catch {
        // retried on the next call
      }
    }
  }
}
