/**
 * The mailbox handler in-process, driven by a P2P Matrix peer written from
 * the spec (tests/support/matrix_peer.ts): ports of Dendrite's routing and
 * sync tests (`relayapi/routing/{sendrelay,relaytxn}_test.go`,
 * `relayapi/internal/perform_test.go` @v0.13.8) with real assertions, the
 * two §2.7 holes as attacks, and bad input.
 */

import assert from "node:assert/strict";
import { DEFAULT_MAILBOX_LIMITS, type MailboxLimits, MailboxServer } from "./server.ts";
import { SqliteMailboxStore } from "./store_sqlite.ts";
import { handlerTransport, MatrixPeer, type PeerTransport, type RelayTxnReply } from "../tests/support/matrix_peer.ts";

const RELAY = "relay.example";
const PDU = { type: "m.room.message", content: { body: "hi" }, room_id: "!r:x", sender: "@a:x" };

interface Fixture {
  server: MailboxServer;
  store: SqliteMailboxStore;
  t: PeerTransport;
  clock: { now: number };
}

function fixture(limits: Partial<MailboxLimits> = {}): Fixture {
  const store = new SqliteMailboxStore(":memory:");
  const clock = { now: 1_800_000_000_000 };
  const server = new MailboxServer({
    store,
    serverNames: [RELAY],
    limits: { ...DEFAULT_MAILBOX_LIMITS, ...limits },
    now: () => clock.now,
  });
  return { server, store, clock, t: handlerTransport((req, body) => server.handle(req, body)) };
}

async function withFixture(limits: Partial<MailboxLimits>, fn: (f: Fixture) => Promise<void>): Promise<void> {
  const f = fixture(limits);
  try {
    await fn(f);
  } finally {
    await f.store.close();
  }
}

function txnOf(r: { json: unknown }): RelayTxnReply {
  return r.json as RelayTxnReply;
}

// sendrelay_test.go

Deno.test("TestForwardEmptyReturnsOk: one PDU gives 200 and body null", () =>
  withFixture({}, async ({ t }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    const res = await s.deposit(t, RELAY, r.serverName, "txn1", { pdus: [PDU] });
    assert.equal(res.status, 200);
    assert.equal(res.text, "null");
  }));

Deno.test('TestForwardBadJSONReturnsError: {"pdus":false} gives 400 M_NOT_JSON and stores nothing', () =>
  withFixture({}, async ({ t, store }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    const res = await t(
      s.request("PUT", `/_matrix/federation/v1/send_relay/t/@user:${r.serverName}`, RELAY, { pdus: false }),
    );
    assert.equal(res.status, 400);
    assert.equal((res.json as { errcode: string }).errcode, "M_NOT_JSON");
    assert.equal((await store.stats()).entries, 0);
  }));

Deno.test("TestForwardTooManyPDUsReturnsError / TestForwardTooManyEDUsReturnsError: 51 PDUs or 101 EDUs give 400", () =>
  withFixture({}, async ({ t, store }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    const pdus = await s.deposit(t, RELAY, r.serverName, "p", { pdus: Array(51).fill(PDU) });
    assert.equal(pdus.status, 400);
    assert.deepEqual(pdus.json, { errcode: "M_BAD_JSON", error: "max 50 pdus / 100 edus" });
    const edus = await s.deposit(t, RELAY, r.serverName, "e", { edus: Array(101).fill({ edu_type: "m.typing" }) });
    assert.equal(edus.status, 400);
    assert.deepEqual(edus.json, { errcode: "M_BAD_JSON", error: "max 50 pdus / 100 edus" });
    assert.equal((await s.deposit(t, RELAY, r.serverName, "ok", { pdus: Array(50).fill(PDU) })).status, 200);
    assert.equal((await store.stats()).entries, 1);
  }));

Deno.test("TestUniqueTransactionStoredInDatabase: one PUT is one entry, keyed by its txnID", () =>
  withFixture({}, async ({ t, store, server }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    assert.equal((await s.deposit(t, RELAY, r.serverName, "txn-A", { pdus: [PDU] })).status, 200);
    assert.equal((await store.stats()).entries, 1);
    // The txnID was recorded: the same one again is a duplicate (200, nothing stored), another is new.
    assert.equal((await s.deposit(t, RELAY, r.serverName, "txn-A", { pdus: [PDU] })).status, 200);
    assert.equal((await store.stats()).entries, 1);
    assert.equal(server.metrics.c.duplicates, 1);
    assert.equal((await s.deposit(t, RELAY, r.serverName, "txn-B", { pdus: [PDU] })).status, 200);
    assert.equal((await store.stats()).entries, 2);
  }));

// relaytxn_test.go

Deno.test("TestGetEmptyDatabaseReturnsNothing: a transaction for someone else is not returned", () =>
  withFixture({}, async ({ t }) => {
    const [s, r, other] = [MatrixPeer.generate(), MatrixPeer.generate(), MatrixPeer.generate()];
    await s.deposit(t, RELAY, other.serverName, "t", { pdus: [PDU] });
    const res = await r.pull(t, RELAY, 0);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { transaction: { origin: "", origin_server_ts: 0, pdus: null }, entries_queued: false });
  }));

Deno.test("TestGetInvalidPrevEntryFails: entry_id -1 is refused (400 here; Dendrite answers 500)", () =>
  withFixture({}, async ({ t }) => {
    const r = MatrixPeer.generate();
    const res = await r.pull(t, RELAY, -1);
    assert.equal(res.status, 400);
    assert.deepEqual(res.json, { errcode: "M_BAD_JSON", error: "Invalid entry id provided. Must be >= 0." });
  }));

Deno.test("TestGetReturnsSavedTransaction: a GET returns it; a GET with its entry_id empties the queue", () =>
  withFixture({}, async ({ t, store }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    await s.deposit(t, RELAY, r.serverName, "t", { pdus: [PDU], edus: [{ edu_type: "m.typing", content: { x: 1 } }] });
    const first = await r.pull(t, RELAY, 0);
    assert.equal(first.status, 200);
    const reply = txnOf(first);
    assert.equal(reply.entries_queued, true);
    assert.deepEqual(reply.transaction, {
      origin: s.serverName,
      origin_server_ts: 0,
      pdus: [PDU],
      edus: [{ edu_type: "m.typing", origin: "", content: { x: 1 } }],
    });
    assert.ok(reply.entry_id! > 0);
    const again = await r.pull(t, RELAY, 0);
    assert.equal(txnOf(again).entry_id, reply.entry_id, "not acknowledged yet: it comes again (at least once)");
    const last = await r.pull(t, RELAY, reply.entry_id!);
    assert.equal(txnOf(last).entries_queued, false);
    assert.equal((await store.stats()).entries, 0);
  }));

Deno.test("TestGetReturnsMultipleSavedTransactions: FIFO over 3 GETs, then empty", () =>
  withFixture({}, async ({ t, store }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    for (const k of [1, 2, 3]) await s.deposit(t, RELAY, r.serverName, `t${k}`, { pdus: [{ ...PDU, depth: k }] });
    const depths: number[] = [];
    let ack = 0;
    for (let k = 0; k < 3; k++) {
      const reply = txnOf(await r.pull(t, RELAY, ack));
      depths.push((reply.transaction.pdus![0] as { depth: number }).depth);
      ack = reply.entry_id!;
    }
    assert.deepEqual(depths, [1, 2, 3]);
    assert.equal(txnOf(await r.pull(t, RELAY, ack)).entries_queued, false);
    assert.equal((await store.stats()).entries, 0);
  }));

Deno.test("relay_txn also takes ?entry_id= (signed as part of the uri) for clients that cannot send a GET body", () =>
  withFixture({}, async ({ t }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    await s.deposit(t, RELAY, r.serverName, "t", { pdus: [PDU] });
    const base = `/_matrix/federation/v1/relay_txn/@user:${r.serverName}`;
    const first = txnOf(await t(r.request("GET", `${base}?entry_id=0`, RELAY)));
    assert.equal(first.entries_queued, true);
    const done = await t(r.request("GET", `${base}?entry_id=${first.entry_id}`, RELAY));
    assert.equal(done.status, 200);
    assert.equal(txnOf(done).entries_queued, false);
  }));

// perform_test.go: the receiver's sync loop (the spec-written peer) against our handler.

Deno.test("TestPerformRelayServerSync / RunsUntilQueueEmpty: depth 2 takes 3 queries and delivers both", () =>
  withFixture({}, async ({ t, store, server }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    await s.deposit(t, RELAY, r.serverName, "a", { pdus: [{ n: 1 }] });
    await s.deposit(t, RELAY, r.serverName, "b", { pdus: [{ n: 2 }] });
    const got: unknown[] = [];
    const calls = await r.sync(t, RELAY, (txn) => void got.push(txn.pdus![0]));
    assert.equal(calls, 3);
    assert.deepEqual(got, [{ n: 1 }, { n: 2 }]);
    assert.equal((await store.stats()).entries, 0);
    assert.equal(server.metrics.c.delivered, 2);
  }));

Deno.test("TestPerformRelayServerSyncFedError: a refusal reaches the syncing client as an error", () =>
  withFixture({}, async ({ t }) => {
    const r = MatrixPeer.generate();
    r.keyId = "ed25519:x";
    const broken: PeerTransport = (req) => t({ ...req, headers: req.headers.filter(([k]) => k !== "Authorization") });
    await assert.rejects(r.sync(broken, RELAY, () => {}), /relay_txn 401/);
  }));

// The two holes of §2.7, as attacks.

Deno.test("attack (§2.7): draining another node's mailbox is refused with 403, and the mail stays", () =>
  withFixture({}, async ({ t, store, server }) => {
    const [s, victim, thief] = [MatrixPeer.generate(), MatrixPeer.generate(), MatrixPeer.generate()];
    await s.deposit(t, RELAY, victim.serverName, "t", { pdus: [PDU] });
    for (const entry of [0, 1]) {
      const res = await thief.pull(t, RELAY, entry, victim.serverName);
      assert.equal(res.status, 403);
      assert.equal((res.json as { errcode: string }).errcode, "M_FORBIDDEN");
      assert.match((res.json as { error: string }).error, /may only collect its own mailbox/);
    }
    assert.equal(server.metrics.refused.forbidden, 2);
    assert.equal((await store.stats()).entries, 1);
    assert.equal(txnOf(await victim.pull(t, RELAY, 0)).transaction.origin, s.serverName);
  }));

Deno.test("attack (§2.7): acknowledging a guessed id of another node's entry deletes nothing of theirs", () =>
  withFixture({}, async ({ t }) => {
    const [s, victim, thief] = [MatrixPeer.generate(), MatrixPeer.generate(), MatrixPeer.generate()];
    await s.deposit(t, RELAY, victim.serverName, "v", { pdus: [{ for: "victim" }] });
    await s.deposit(t, RELAY, thief.serverName, "m", { pdus: [{ for: "thief" }] });
    // Ids are sequential: the thief tries every small id as an acknowledgement in its own mailbox.
    for (let id = 1; id <= 5; id++) {
      const res = await thief.pull(t, RELAY, id);
      assert.equal(res.status, 200);
    }
    const v = txnOf(await victim.pull(t, RELAY, 0));
    assert.equal(v.entries_queued, true, "the victim's entry is still there");
    assert.deepEqual(v.transaction.pdus, [{ for: "victim" }]);
    // and the victim's mailbox is not stuck (Dendrite answered 500 "Failed retrieving json blob" forever)
    assert.equal(txnOf(await victim.pull(t, RELAY, v.entry_id!)).entries_queued, false);
  }));

// Bad input.

Deno.test("bad input: malformed JSON, wrong Content-Type, invalid UTF-8 are refused with 400 and counted", () =>
  withFixture({}, async ({ t, store, server }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    const good = s.depositRequest(RELAY, r.serverName, "t", { pdus: [PDU] });
    const malformed = await t({ ...good, body: '{"pdus":[' });
    assert.equal(malformed.status, 400);
    assert.equal((malformed.json as { errcode: string }).errcode, "M_NOT_JSON");
    const dup = await t({ ...good, body: '{"pdus":[],"pdus":[1]}' });
    assert.equal(dup.status, 400);
    assert.match((dup.json as { error: string }).error, /Duplicate key/);
    const typed = await t({
      ...good,
      headers: good.headers.map(([k, v]) => [k, k === "Content-Type" ? "text/plain" : v]),
    });
    assert.equal(typed.status, 400);
    assert.match((typed.json as { message: string }).message, /must be "application\/json", not "text\/plain"/);
    const withCharset = await t({
      ...good,
      headers: good.headers.map(([k, v]) => [k, k === "Content-Type" ? "application/json; charset=utf-8" : v]),
    });
    assert.equal(withCharset.status, 200, "parameters on the media type are fine");
    const req = new Request(`http://relay.test${good.uri}`, {
      method: "PUT",
      headers: [...good.headers],
      body: new Uint8Array([0x7b, 0xff, 0x7d]),
    });
    const utf8 = await server.handle(req);
    assert.equal(utf8.status, 400);
    assert.match(await utf8.text(), /not valid UTF-8/);
    assert.equal(server.metrics.refused.bad_request, 4);
    assert.equal((await store.stats()).entries, 1);
  }));

Deno.test("bad input: missing, forged, replayed-elsewhere and wrong-destination signatures", () =>
  withFixture({}, async ({ t, store, server }) => {
    const [s, r, other] = [MatrixPeer.generate(), MatrixPeer.generate(), MatrixPeer.generate()];
    const good = s.depositRequest(RELAY, r.serverName, "t", { pdus: [PDU] });
    const cases: [string, typeof good, number, RegExp][] = [
      ["missing", { ...good, headers: good.headers.filter(([k]) => k !== "Authorization") }, 401, /Missing/],
      ["body changed", { ...good, body: JSON.stringify({ pdus: [PDU, PDU] }) }, 401, /Invalid request signature/],
      [
        "other recipient",
        { ...good, uri: good.uri.replace(r.serverName, other.serverName) },
        401,
        /Invalid request signature/,
      ],
      [
        "other key, same name",
        {
          ...good,
          headers: other.depositRequest(RELAY, r.serverName, "t", { pdus: [PDU] }).headers.map(([k, v]) =>
            [k, v.replaceAll(other.serverName, s.serverName)] as [string, string]
          ),
        },
        401,
        /Invalid request signature/,
      ],
      [
        "destination not ours",
        s.depositRequest("elsewhere.example", r.serverName, "t", { pdus: [PDU] }),
        400,
        /Unrecognised server name "elsewhere.example"/,
      ],
    ];
    for (const [what, req, status, msg] of cases) {
      const res = await t(req);
      assert.equal(res.status, status, what);
      assert.match((res.json as { message: string }).message, msg, what);
    }
    assert.equal(server.metrics.refused.auth, cases.length);
    assert.equal((await store.stats()).entries, 0);
  }));

Deno.test("several Authorization headers (two key ids of one P2P server) are each checked; one bad spoils it", () =>
  withFixture({}, async ({ t }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    const req = s.depositRequest(RELAY, r.serverName, "t", { pdus: [PDU] });
    s.keyId = "ed25519:second";
    const second = s.depositRequest(RELAY, r.serverName, "t", { pdus: [PDU] }).headers[0]!;
    const both = await t({ ...req, headers: [...req.headers, second] });
    assert.equal(both.status, 200, both.text);
    const forged: [string, string] = [second[0], second[1].replace(/sig="[^"]+"/, `sig="${"A".repeat(86)}"`)];
    const req2 = s.depositRequest(RELAY, r.serverName, "t2", { pdus: [] });
    assert.equal((await t(req2)).status, 200, "its own header is good");
    const spoiled = await t({ ...req2, headers: [...req2.headers, forged] });
    assert.equal(spoiled.status, 401);
  }));

Deno.test("bad input: a body over max_body_bytes gets 413 without being stored", () =>
  withFixture({ maxBodyBytes: 4096 }, async ({ t, store, server }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    const res = await s.deposit(t, RELAY, r.serverName, "big", { pdus: [{ blob: "x".repeat(5000) }] });
    assert.equal(res.status, 413);
    assert.equal((res.json as { errcode: string }).errcode, "M_TOO_LARGE");
    // Without Content-Length (a stream), the cap holds as well.
    const req = s.depositRequest(RELAY, r.serverName, "big2", { pdus: [{ blob: "x".repeat(5000) }] });
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(req.body!));
        c.close();
      },
    });
    const streamed = await server.handle(
      new Request(`http://relay.test${req.uri}`, { method: "PUT", headers: [...req.headers], body: stream }),
    );
    assert.equal(streamed.status, 413);
    assert.equal(server.metrics.refused.too_large, 2);
    assert.equal((await store.stats()).entries, 0);
  }));

Deno.test("bad input: user ids Dendrite refuses, and recipients that could never collect", () =>
  withFixture({}, async ({ t }) => {
    const s = MatrixPeer.generate();
    const put = (user: string) =>
      t(s.request("PUT", `/_matrix/federation/v1/send_relay/t/${encodeURIComponent(user)}`, RELAY, { pdus: [] }));
    const noSigil = await put("user:local");
    assert.equal(noSigil.status, 400);
    assert.deepEqual(noSigil.json, { errcode: "M_INVALID_USERNAME", error: "Username was invalid" });
    const notP2P = await put("@user:matrix.org");
    assert.equal(notP2P.status, 400);
    assert.match((notP2P.json as { error: string }).error, /not a P2P server name/);
    const wrongMethod = await t(s.request("POST", "/_matrix/federation/v1/relay_txn/@u:x", RELAY, {}));
    assert.equal(wrongMethod.status, 405);
    const unknown = await t(s.request("GET", "/_matrix/federation/v1/version", RELAY));
    assert.equal(unknown.status, 404);
  }));

Deno.test("quota: 10,000 deposits for one recipient past its quota; the first N stored, the rest 507, nothing lost", () =>
  withFixture(
    { maxEntries: 100, maxBytes: 1 << 20, senderPerSecond: 1e6, senderBurst: 1e6 },
    async ({ t, store, server }) => {
      const r = MatrixPeer.generate();
      const senders = Array.from({ length: 10 }, () => MatrixPeer.generate());
      const statuses = new Map<number, number>();
      for (let k = 0; k < 10_000; k++) {
        const res = await senders[k % 10]!.deposit(t, RELAY, r.serverName, `t${k}`, { pdus: [{ k }] });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (k === 100) {
          assert.equal(res.status, 507);
          assert.deepEqual(res.json, {
            errcode: "M_RESOURCE_LIMIT_EXCEEDED",
            error: `Mailbox of ${r.serverName} is full (100 entries); try again after it is collected`,
          });
        }
      }
      assert.deepEqual(Object.fromEntries(statuses), { 200: 100, 507: 9_900 });
      assert.equal((await store.stats()).entries, 100);
      assert.equal(server.metrics.refused.quota, 9_900);
      // The stored ones are the first 100, in order, and collecting frees room again.
      const ks: number[] = [];
      await r.sync(t, RELAY, (txn) => void ks.push((txn.pdus![0] as { k: number }).k));
      assert.deepEqual(ks, Array.from({ length: 100 }, (_, k) => k));
      assert.equal((await senders[0]!.deposit(t, RELAY, r.serverName, "after", { pdus: [] })).status, 200);
    },
  ));

Deno.test("quota: bytes per recipient", () =>
  withFixture({ maxBytes: 2000 }, async ({ t }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    assert.equal((await s.deposit(t, RELAY, r.serverName, "a", { pdus: [{ b: "x".repeat(1500) }] })).status, 200);
    const res = await s.deposit(t, RELAY, r.serverName, "b", { pdus: [{ b: "x".repeat(1000) }] });
    assert.equal(res.status, 507);
    assert.match((res.json as { error: string }).error, /\(2000 bytes\)/);
  }));

Deno.test("rate: a sender past its burst gets 429 with retry_after_ms; others are unaffected; it refills", () =>
  withFixture({ senderPerSecond: 2, senderBurst: 3 }, async ({ t, clock, server }) => {
    const [s, other, r] = [MatrixPeer.generate(), MatrixPeer.generate(), MatrixPeer.generate()];
    for (let k = 0; k < 3; k++) assert.equal((await s.deposit(t, RELAY, r.serverName, `t${k}`, {})).status, 200);
    const limited = await s.deposit(t, RELAY, r.serverName, "t3", {});
    assert.equal(limited.status, 429);
    assert.equal((limited.json as { errcode: string }).errcode, "M_LIMIT_EXCEEDED");
    assert.equal((limited.json as { retry_after_ms: number }).retry_after_ms, 500);
    assert.equal((await other.deposit(t, RELAY, r.serverName, "o", {})).status, 200);
    clock.now += 500;
    assert.equal((await s.deposit(t, RELAY, r.serverName, "t3", {})).status, 200);
    assert.equal(server.metrics.refused.rate, 1);
  }));

Deno.test("expiry: an entry unread after expiry is never delivered, is swept and counted", () =>
  withFixture({ expiryMs: 60_000 }, async ({ t, clock, server, store }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    await s.deposit(t, RELAY, r.serverName, "old", { pdus: [{ n: "old" }] });
    clock.now += 30_000;
    await s.deposit(t, RELAY, r.serverName, "new", { pdus: [{ n: "new" }] });
    clock.now += 40_000;
    const reply = txnOf(await r.pull(t, RELAY, 0));
    assert.deepEqual(reply.transaction.pdus, [{ n: "new" }]);
    assert.equal(server.metrics.c.expired, 1);
    clock.now += 60_000;
    assert.equal(await server.sweep(), 1);
    assert.equal(server.metrics.c.expired, 2);
    assert.equal((await store.stats()).entries, 0);
    assert.equal(server.metrics.queuedEntries, 0);
  }));

Deno.test("metrics: stored, duplicates, delivered, served, refused by reason, queue depth", () =>
  withFixture({}, async ({ t, server }) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    await s.deposit(t, RELAY, r.serverName, "a", { pdus: [] });
    await s.deposit(t, RELAY, r.serverName, "a", { pdus: [] });
    await s.deposit(t, RELAY, r.serverName, "b", { pdus: [] });
    await r.sync(t, RELAY, () => {});
    const unsigned = s.depositRequest(RELAY, r.serverName, "c", {});
    await t({ ...unsigned, headers: unsigned.headers.filter(([k]) => k !== "Authorization") });
    await server.refreshStats();
    const text = server.metrics.render();
    for (
      const line of [
        "mailbox_stored_total 2",
        "mailbox_duplicates_total 1",
        "mailbox_delivered_total 2",
        "mailbox_served_total 2",
        'mailbox_refused_total{reason="auth"} 1',
        'mailbox_refused_total{reason="quota"} 0',
        "mailbox_queued_entries 0",
        "mailbox_queued_bytes 0",
      ]
    ) assert.ok(text.includes(line + "\n"), `${line} in\n${text}`);
  }));

Deno.test("TestCreateInvalidRelayPublicRoutesPanics: a handler without a store is refused", () => {
  assert.throws(
    () => new MailboxServer({} as ConstructorParameters<typeof MailboxServer>[0]),
    TypeError,
  );
});
