import assert from "node:assert/strict";
import { parseJson } from "./canonical_json.ts";
import {
  BodyError,
  EMPTY_RELAY_TXN,
  matchRoute,
  MAX_EDUS,
  MAX_PDUS,
  parseRelayEvents,
  relayTxnEntryId,
  relayTxnReply,
  storedTransaction,
} from "./relay_api.ts";

Deno.test("matchRoute() decodes path variables, knows the methods, leaves other paths alone", () => {
  assert.deepEqual(matchRoute("PUT", "/_matrix/federation/v1/send_relay/t%2F1/@u:abc"), {
    route: "send_relay",
    txnId: "t/1",
    userId: "@u:abc",
  });
  assert.deepEqual(matchRoute("GET", "/_matrix/federation/v1/relay_txn/%40u%3Aabc"), {
    route: "relay_txn",
    userId: "@u:abc",
  });
  assert.deepEqual(matchRoute("GET", "/_matrix/federation/v1/send_relay/t/@u:abc"), {
    route: "bad_method",
    allow: "PUT",
  });
  assert.deepEqual(matchRoute("POST", "/_matrix/federation/v1/relay_txn/@u:abc"), {
    route: "bad_method",
    allow: "GET",
  });
  assert.deepEqual(matchRoute("PUT", "/_matrix/federation/v1/send_relay/%E0%A4%A/@u:abc"), { route: "bad_path" });
  assert.equal(matchRoute("GET", "/_matrix/federation/v1/version"), null);
  assert.equal(matchRoute("GET", "/ping"), null);
});

Deno.test("parseRelayEvents() takes Dendrite's RelayEvents shape and limits", () => {
  const ev = parseRelayEvents(parseJson(
    '{"origin":"ignored","pdus":[{"a":1},2],"edus":[{"edu_type":"m.typing","content":{"x":1},"extra":1}]}',
  ));
  assert.equal(ev.pdus!.length, 2);
  assert.deepEqual(ev.edus.map((e) => e.type), ["m.typing"]);
  assert.deepEqual(parseRelayEvents(null), { pdus: null, edus: [] });
  const refuses = (text: string, errcode: string, msg: RegExp) =>
    assert.throws(() => parseRelayEvents(parseJson(text)), (e: unknown) => {
      assert.ok(e instanceof BodyError);
      assert.equal(e.errcode, errcode);
      assert.match(e.message, msg);
      return true;
    });
  refuses('{"pdus":false}', "M_NOT_JSON", /pdus must be an array/);
  refuses("[]", "M_NOT_JSON", /object/);
  refuses('{"edus":[1]}', "M_NOT_JSON", /edus\[0\]/);
  refuses('{"edus":[{"content":{}}]}', "M_NOT_JSON", /edu_type/);
  refuses(JSON.stringify({ pdus: Array(MAX_PDUS + 1).fill({}) }), "M_BAD_JSON", /max 50 pdus \/ 100 edus/);
  refuses(JSON.stringify({ edus: Array(MAX_EDUS + 1).fill({ edu_type: "x" }) }), "M_BAD_JSON", /max 50 pdus/);
  assert.doesNotThrow(() => parseRelayEvents(parseJson(JSON.stringify({ pdus: Array(MAX_PDUS).fill({}) }))));
});

Deno.test("storedTransaction() uses the authenticated origin, ts 0, and re-encodes EDUs like gomatrixserverlib", () => {
  const ev = parseRelayEvents(
    parseJson('{"origin":"liar","pdus":[{"b":1,"a":2}],"edus":[{"edu_type":"t","content":{}}]}'),
  );
  assert.equal(
    storedTransaction("sender", ev),
    '{"edus":[{"content":{},"edu_type":"t","origin":""}],"origin":"sender","origin_server_ts":0,"pdus":[{"a":2,"b":1}]}',
  );
  assert.equal(storedTransaction("s", parseRelayEvents(null)), '{"origin":"s","origin_server_ts":0,"pdus":null}');
});

Deno.test("relayTxnEntryId() reads the body, else ?entry_id=, and refuses negatives and conflicts", () => {
  assert.equal(relayTxnEntryId(parseJson('{"entry_id":17}'), null), 17);
  assert.equal(relayTxnEntryId(parseJson("{}"), null), 0);
  assert.equal(relayTxnEntryId(undefined, "5"), 5);
  assert.equal(relayTxnEntryId(undefined, null), 0);
  assert.equal(relayTxnEntryId(parseJson('{"entry_id":5}'), "5"), 5);
  assert.throws(() => relayTxnEntryId(parseJson('{"entry_id":-1}'), null), /Invalid entry id provided. Must be >= 0./);
  assert.throws(() => relayTxnEntryId(parseJson('{"entry_id":1.5}'), null), /integer/);
  assert.throws(() => relayTxnEntryId(parseJson('{"entry_id":"1"}'), null), /integer/);
  assert.throws(() => relayTxnEntryId(parseJson("[1]"), null), /invalid json provided/);
  assert.throws(() => relayTxnEntryId(parseJson('{"entry_id":1}'), "2"), /differ/);
  assert.throws(() => relayTxnEntryId(undefined, "x"), /integer/);
});

Deno.test("relay_txn replies have Dendrite's shape: empty without entry_id, full with it", () => {
  assert.deepEqual(JSON.parse(EMPTY_RELAY_TXN), {
    transaction: { origin: "", origin_server_ts: 0, pdus: null },
    entries_queued: false,
  });
  assert.deepEqual(JSON.parse(relayTxnReply(17, '{"origin":"o","origin_server_ts":0,"pdus":[]}')), {
    transaction: { origin: "o", origin_server_ts: 0, pdus: [] },
    entry_id: 17,
    entries_queued: true,
  });
});
