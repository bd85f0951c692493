/**
 * @module
 * Dendrite's relay API as data (spec discovery-and-mailbox.md §2.3, §2.4;
 * `relayapi/routing/{sendrelay,relaytxn}.go @v0.13.8`, gomatrixserverlib
 * `fclient/relaytypes.go`): route matching, request bodies, the stored
 * transaction, response bodies and error bodies. No I/O.
 *
 * - `PUT /_matrix/federation/v1/send_relay/{txnID}/{userID}`: body
 *   `{"pdus":[…],"edus":[…]}` (the sender's whole Transaction; other fields
 *   ignored), at most 50 PDUs and 100 EDUs; 200 `null`.
 * - `GET /_matrix/federation/v1/relay_txn/{userID}`: body `{"entry_id":N}`
 *   (or `?entry_id=N`), N acknowledges the previously returned entry; the
 *   reply carries the oldest remaining one. `entries_queued` means "this
 *   reply carries a transaction", so N entries take N+1 calls.
 */

import { canonicalJson, JsonNumber, type JsonObject, type JsonValue } from "./canonical_json.ts";

/** Most PDUs in one deposit (Dendrite's limit, also the spec's for `/send`). */
export const MAX_PDUS = 50;
/** Most EDUs in one deposit. */
export const MAX_EDUS = 100;
/** Longest transaction id we store, characters. */
export const MAX_TXN_ID_LEN = 255;

/** Path prefix of both routes. */
export const FEDERATION_PREFIX = "/_matrix/federation/v1/";

/** A matched route, with path variables decoded. */
export type Route =
  | { route: "send_relay"; txnId: string; userId: string }
  | { route: "relay_txn"; userId: string }
  | { route: "bad_method"; allow: string }
  | { route: "bad_path" };

/**
 * Matches a request path against the two routes. `null` if the path is
 * not ours at all (another handler may want it).
 */
export function matchRoute(method: string, pathname: string): Route | null {
  if (!pathname.startsWith(FEDERATION_PREFIX)) return null;
  const parts = pathname.slice(FEDERATION_PREFIX.length).split("/");
  const decode = (s: string): string | null => {
    try {
      return decodeURIComponent(s);
    } catch {
      return null;
    }
  };
  if (parts[0] === "send_relay" && parts.length === 3) {
    if (method !== "PUT") return { route: "bad_method", allow: "PUT" };
    const txnId = decode(parts[1]!);
    const userId = decode(parts[2]!);
    if (txnId === null || userId === null || txnId === "" || txnId.length > MAX_TXN_ID_LEN) {
      return { route: "bad_path" };
    }
    return { route: "send_relay", txnId, userId };
  }
  if (parts[0] === "relay_txn" && parts.length === 2) {
    if (method !== "GET") return { route: "bad_method", allow: "GET" };
    const userId = decode(parts[1]!);
    if (userId === null) return { route: "bad_path" };
    return { route: "relay_txn", userId };
  }
  return null;
}

/** An EDU as Dendrite re-encodes it (`gomatrixserverlib.EDU`). */
export interface Edu {
  /** `edu_type`. */
  type: string;
  /** `origin` as the sender wrote it ("" if absent). */
  origin: string;
  /** `destination`, if non-empty. */
  destination?: string;
  /** `content`, if present. */
  content?: JsonValue;
}

/** The events of a deposit. */
export interface RelayEvents {
  /** PDUs, opaque; `null` when the body had none. */
  pdus: JsonValue[] | null;
  /** EDUs. */
  edus: Edu[];
}

/** A body that is JSON but not the shape a route expects; `message` says what. */
export class BodyError extends Error {
  /** Matrix error code to answer with. */
  readonly errcode: string;
  /** @param errcode Matrix error code; @param message what is wrong */
  constructor(errcode: string, message: string) {
    super(message);
    this.name = "BodyError";
    this.errcode = errcode;
  }
}

function stringField(o: JsonObject, key: string, where: string): string {
  const v = o.get(key);
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw new BodyError("M_NOT_JSON", `${where}.${key} must be a string`);
  return v;
}

/**
 * Reads a deposit body (Dendrite's `RelayEvents`): `pdus` an array of any
 * JSON, `edus` an array of objects with a string `edu_type`. `null` body
 * means no events, as Go's decoder treats it.
 * @throws {BodyError} M_NOT_JSON for a wrong shape, M_BAD_JSON past the limits
 */
export function parseRelayEvents(body: JsonValue): RelayEvents {
  if (body === null) return { pdus: null, edus: [] };
  if (!(body instanceof Map)) throw new BodyError("M_NOT_JSON", "body must be a JSON object");
  const pdus = body.get("pdus") ?? null;
  const edus = body.get("edus") ?? null;
  if (pdus !== null && !Array.isArray(pdus)) throw new BodyError("M_NOT_JSON", "pdus must be an array");
  if (edus !== null && !Array.isArray(edus)) throw new BodyError("M_NOT_JSON", "edus must be an array");
  if ((pdus?.length ?? 0) > MAX_PDUS || (edus?.length ?? 0) > MAX_EDUS) {
    throw new BodyError("M_BAD_JSON", `max ${MAX_PDUS} pdus / ${MAX_EDUS} edus`);
  }
  const out: Edu[] = [];
  for (const [k, e] of (edus ?? []).entries()) {
    if (!(e instanceof Map)) throw new BodyError("M_NOT_JSON", `edus[${k}] must be an object`);
    const type = e.get("edu_type");
    if (typeof type !== "string" || type === "") {
      throw new BodyError("M_NOT_JSON", `edus[${k}].edu_type must be a non-empty string`);
    }
    const destination = stringField(e, "destination", `edus[${k}]`);
    const content = e.get("content");
    out.push({
      type,
      origin: stringField(e, "origin", `edus[${k}]`),
      ...(destination ? { destination } : {}),
      ...(content !== undefined ? { content } : {}),
    });
  }
  return { pdus: pdus as JsonValue[] | null, edus: out };
}

/**
 * The transaction as stored and later returned: canonical JSON of
 * `{"origin","origin_server_ts":0,"pdus","edus"?}`, with `origin` the
 * authenticated sender (the body's own `origin` is ignored, as in Dendrite).
 */
export function storedTransaction(origin: string, events: RelayEvents): string {
  return canonicalJson({
    origin,
    origin_server_ts: 0,
    pdus: events.pdus,
    ...(events.edus.length > 0
      ? {
        edus: events.edus.map((e) => ({
          edu_type: e.type,
          origin: e.origin,
          ...(e.destination !== undefined ? { destination: e.destination } : {}),
          ...(e.content !== undefined ? { content: e.content } : {}),
        })),
      }
      : {}),
  });
}

/** Largest `entry_id` we accept (ids are positive safe integers). */
const MAX_ENTRY_ID = Number.MAX_SAFE_INTEGER;

function entryIdOf(v: JsonValue | undefined): number {
  if (v === undefined || v === null) return 0;
  if (!(v instanceof JsonNumber) || !/^-?[0-9]+$/.test(v.raw)) {
    throw new BodyError("M_BAD_JSON", "entry_id must be an integer");
  }
  const n = Number(v.raw);
  if (n < 0) throw new BodyError("M_BAD_JSON", "Invalid entry id provided. Must be >= 0.");
  if (n > MAX_ENTRY_ID) throw new BodyError("M_BAD_JSON", "entry_id too large");
  return n;
}

/**
 * The `entry_id` of a `relay_txn` request: from the JSON body (Dendrite
 * always sends one), else from `?entry_id=`, else 0. Both present and
 * different is refused.
 * @param body parsed body, `undefined` if the body was empty
 * @param query the `entry_id` query parameter, if any
 * @throws {BodyError}
 */
export function relayTxnEntryId(body: JsonValue | undefined, query: string | null): number {
  let fromBody: number | undefined;
  if (body !== undefined && body !== null) {
    if (!(body instanceof Map)) throw new BodyError("M_BAD_JSON", "invalid json provided");
    fromBody = entryIdOf(body.get("entry_id"));
  }
  let fromQuery: number | undefined;
  if (query !== null) {
    if (!/^-?[0-9]{1,16}$/.test(query)) throw new BodyError("M_BAD_JSON", "entry_id must be an integer");
    fromQuery = entryIdOf(new JsonNumber(query));
  }
  if (fromBody !== undefined && fromQuery !== undefined && fromBody !== fromQuery) {
    throw new BodyError("M_BAD_JSON", "entry_id in the body and in the query differ");
  }
  return fromBody ?? fromQuery ?? 0;
}

/** Reply body when the mailbox is empty (Dendrite's zero `RespGetRelayTransaction`). */
export const EMPTY_RELAY_TXN = '{"transaction":{"origin":"","origin_server_ts":0,"pdus":null},"entries_queued":false}';

/** Reply body carrying one stored transaction (its canonical JSON text) and its entry id. */
export function relayTxnReply(entryId: number, transaction: string): string {
  return `{"transaction":${transaction},"entry_id":${entryId},"entries_queued":true}`;
}

/** A Matrix error body `{"errcode","error"}`. */
export function matrixError(errcode: string, error: string): string {
  return canonicalJson({ errcode, error });
}

/** Dendrite's authentication error body `{"message"}`. */
export function messageError(message: string): string {
  return canonicalJson({ message });
}
