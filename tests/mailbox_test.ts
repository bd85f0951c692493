/**
 * The mailbox as the service runs it (`startServices`, as `main.ts` does):
 * on the relay listener over real sockets, next to the relay's own
 * endpoints, with both stores. Ports of Dendrite's `relayapi_test.go` and
 * `cmd/dendrite-demo-pinecone/relay/retriever_test.go`, the sender's relay
 * list (`federationapi/storage/tables/relay_servers_table_test.go`), and
 * `/healthz`, metrics, `check-config`.
 */

import assert from "node:assert/strict";
import { configFromText } from "../config/mod.ts";
import { startServices } from "../main.ts";
import { silentLogger } from "../log/mod.ts";
import { MatrixPeer, type PeerTransport, RelayList, socketTransport } from "./support/matrix_peer.ts";
import { rawGet } from "./support/http_raw.ts";
import { RedisServer } from "./support/redis_server.ts";

const RELAY = "relay.test";

async function withService(
  extra: string,
  fn: (t: PeerTransport, port: number, metricsPort: number | undefined) => Promise<void>,
  opts: { metrics?: boolean } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mailbox-svc-" });
  const { config } = configFromText(
    `http_bind_addr = "127.0.0.1:0"\nenable_stun = false\nenable_metrics = ${opts.metrics ? "true" : "false"}\n` +
      `metrics_bind_addr = "127.0.0.1:0"\n${extra.replaceAll("DATA_DIR", dir)}`,
    "inline",
  );
  const services = await startServices(config, silentLogger);
  try {
    const port = services.relay!.httpAddr!.port;
    await fn(socketTransport(port), port, services.relay!.metricsAddr?.port);
  } finally {
    await services.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const SQLITE = `[mailbox]\nserver_names = ["${RELAY}"]\ndata_dir = "DATA_DIR"\n`;

Deno.test("TestCreateRelayPublicRoutes: signed by a random key; user:local is 400, @user:<hex> is 200 on both routes", () =>
  withService(SQLITE, async (t) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    const bad = await t(s.request("PUT", "/_matrix/federation/v1/send_relay/t/user:local", RELAY, { pdus: [] }));
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json, { errcode: "M_INVALID_USERNAME", error: "Username was invalid" });
    const badGet = await t(r.request("GET", "/_matrix/federation/v1/relay_txn/user:local", RELAY, { entry_id: 0 }));
    assert.equal(badGet.status, 400);
    // Dendrite answers 200 for @user:local on relay_txn whoever signs; here the mailbox must be the signer's own.
    const put = await s.deposit(t, RELAY, r.serverName, "t1", { pdus: [{ a: 1 }] });
    assert.equal(put.status, 200);
    const get = await r.pull(t, RELAY, 0);
    assert.equal(get.status, 200);
    assert.deepEqual((get.json as { transaction: { pdus: unknown } }).transaction.pdus, [{ a: 1 }]);
  }));

Deno.test("relay listener: two Authorization headers (joined by the Fetch API) are both read and checked", () =>
  withService(SQLITE, async (t) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    const first = s.depositRequest(RELAY, r.serverName, "t", { pdus: [] });
    s.keyId = "ed25519:other";
    const second = s.depositRequest(RELAY, r.serverName, "t", { pdus: [] }).headers[0]!;
    assert.equal((await t({ ...first, headers: [...first.headers, second] })).status, 200);
    const bad: [string, string] = [second[0], second[1].replace(/sig="[^"]+"/, `sig="${"B".repeat(86)}"`)];
    assert.equal((await t({ ...first, headers: [...first.headers, bad] })).status, 401);
  }));

Deno.test("TestDisableRelayPublicRoutes: without [mailbox] both routes are 404; the relay's endpoints still answer", () =>
  withService("", async (t, port) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    assert.equal((await s.deposit(t, RELAY, r.serverName, "t", { pdus: [] })).status, 404);
    assert.equal((await r.pull(t, RELAY, 0)).status, 404);
    assert.equal((await rawGet(port, "/ping")).status, 200);
  }));

Deno.test("TestCreateNewRelayInternalAPI: the service builds with SQLite and with Redis, and both carry mail", async () => {
  const redis = await RedisServer.start();
  try {
    for (
      const extra of [SQLITE, `[mailbox]\nserver_names = ["${RELAY}"]\nstore = "redis"\nredis_url = "${redis.url}"\n`]
    ) {
      await withService(extra, async (t) => {
        const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
        assert.equal(
          (await s.deposit(t, RELAY, r.serverName, "t", { pdus: [{ via: extra.slice(0, 20) }] })).status,
          200,
        );
        const got: unknown[] = [];
        assert.equal(await r.sync(t, RELAY, (txn) => void got.push(txn.pdus![0])), 2);
        assert.equal(got.length, 1);
      });
    }
  } finally {
    await redis.close();
  }
});

Deno.test("relay listener: a GET body reaches relay_txn; an oversize PUT gets 413 from the listener, unread", () =>
  withService(SQLITE + "max_body_bytes = 2048\n", async (t, _port, metricsPort) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    const big = s.depositRequest(RELAY, r.serverName, "big", { pdus: [{ b: "x".repeat(4000) }] });
    assert.equal((await t(big)).status, 413);
    assert.equal((await s.deposit(t, RELAY, r.serverName, "small", { pdus: [{ b: 1 }] })).status, 200);
    // entry_id in the GET body acknowledges: the second pull of the same id comes back empty.
    const first = (await r.pull(t, RELAY, 0)).json as { entry_id: number };
    const done = (await r.pull(t, RELAY, first.entry_id)).json as { entries_queued: boolean };
    assert.equal(done.entries_queued, false);
    // Service details are on the metrics port's /healthz (the public one says only status and version).
    const health = await rawGet(metricsPort!, "/healthz");
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(health.body).mailbox, { store: "sqlite", state: "ok", queued_entries: 0 });
  }, { metrics: true }));

Deno.test("metrics endpoint: mailbox counters and queue depth next to the relay's", () =>
  withService(SQLITE, async (t, _port, metricsPort) => {
    const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
    await s.deposit(t, RELAY, r.serverName, "a", { pdus: [] });
    await s.deposit(t, RELAY, r.serverName, "b", { pdus: [] });
    await r.pull(t, RELAY, 0, "f".repeat(64)); // someone else's mailbox: 403
    // As Prometheus asks (OpenMetrics, ending in # EOF); a plain scrape gets the 0.0.4 text format.
    const m = await rawGet(metricsPort!, "/metrics", ["Accept: application/openmetrics-text; version=1.0.0"]);
    assert.match(m.body, /^mailbox_stored_total 2$/m);
    assert.match(m.body, /^mailbox_queued_entries 2$/m);
    assert.match(m.body, /^mailbox_refused_total\{reason="forbidden"\} 1$/m);
    assert.match(m.body, /^relayserver_accepts_total /m);
    assert.ok(m.body.endsWith("# EOF\n"));
  }, { metrics: true }));

Deno.test("TestRelayRetrieverInitialization / TestRelayRetrieverSync: two relays loaded, both synced and marked", async () => {
  await withService(SQLITE, async (t1) => {
    await withService(`[mailbox]\nserver_names = ["relay2.test"]\ndata_dir = "DATA_DIR"\n`, async (t2) => {
      const [s, r] = [MatrixPeer.generate(), MatrixPeer.generate()];
      const list = new RelayList();
      list.insert(r.serverName, [RELAY, "relay2.test"]);
      assert.deepEqual(list.get(r.serverName), [RELAY, "relay2.test"]);
      // The sender, its destination offline, deposits to every known relay (destinationqueue.go).
      for (const [relay, t] of [[RELAY, t1], ["relay2.test", t2]] as const) {
        assert.equal((await s.deposit(t, relay, r.serverName, "same-txn", { pdus: [{ n: 1 }] })).status, 200);
      }
      const got: string[] = [];
      await list.syncAll(r, new Map([[RELAY, t1], ["relay2.test", t2]]), (_txn, _id, relay) => void got.push(relay));
      assert.deepEqual(got, [RELAY, "relay2.test"]);
      assert.deepEqual([...list.queried], [RELAY, "relay2.test"]);
    });
  });
});

Deno.test("relay_servers table (sender's relay list): insert, duplicates, unknown destination, delete some, delete all", () => {
  const l = new RelayList();
  l.insert("d", ["r1", "r2"]);
  assert.deepEqual(l.get("d"), ["r1", "r2"]);
  l.insert("d", ["r2", "r1", "r3"]);
  assert.deepEqual(l.get("d"), ["r1", "r2", "r3"], "WithDuplicates: each relay once");
  assert.deepEqual(l.get("unknown"), [], "UnknownDestination: empty");
  l.delete("d", ["r2"]);
  assert.deepEqual(l.get("d"), ["r1", "r3"], "DeleteCorrect: only the named relay");
  l.deleteAll("d");
  assert.deepEqual(l.get("d"), []);
});

Deno.test("config: [mailbox] defaults, validation, data_dir default from the environment", () => {
  const { config, warnings } = configFromText("[mailbox]\n", "inline", { env: { HOME: "/home/op" } });
  const m = config.mailbox!;
  assert.deepEqual(
    [
      m.store,
      m.maxEntriesPerRecipient,
      m.maxBytesPerRecipient,
      m.expirySecs,
      m.maxBodyBytes,
      m.dataDir,
      m.dataDirDerived,
    ],
    ["sqlite", 1000, 16 * 1024 * 1024, 7 * 24 * 3600, 1024 * 1024, "/home/op/.local/state/iroh-relay-deno", true],
  );
  assert.ok(warnings.some((w) => w.startsWith("mailbox.server_names: empty")));
  assert.equal(
    configFromText("[mailbox]\n", "x", { env: { STATE_DIRECTORY: "/var/lib/iroh-relay-deno" } }).config.mailbox!
      .dataDir,
    "/var/lib/iroh-relay-deno",
  );
  const bad: [string, RegExp][] = [
    ['[mailbox]\nstore = "postgres"', /mailbox.store: expected one of "sqlite", "redis"/],
    ['[mailbox]\nredis_url = "redis://x"', /mailbox.redis_url: only applies to store = "redis"/],
    ['[mailbox]\nstore = "redis"\nredis_url = "http://x"', /mailbox.redis_url: expected a redis:\/\//],
    ["[mailbox]\nexpiry_secs = 0", /mailbox.expiry_secs: must be at least 1/],
    ["[mailbox]\nmax_body_bytes = 99999999", /mailbox.max_body_bytes: must be at most/],
    ['[mailbox]\nserver_names = ["a b"]', /mailbox.server_names: "a b" is not a server name/],
    ['[mailbox]\ndata_dir = ""', /mailbox.data_dir: must not be empty/],
    ['[mailbox]\nsqlite_synchronous = "off"', /mailbox.sqlite_synchronous: expected one of "normal", "full"/],
    ["enable_relay = false\n[mailbox]", /mailbox: is served on the relay listener/],
    ["[mailbox]\nmax_total_bytes = 2048\nmax_bytes_per_recipient = 4096", /max_total_bytes: must be at least/],
  ];
  for (const [text, re] of bad) assert.throws(() => configFromText(text, "inline"), re, text);
  assert.throws(() => configFromText("[mailbox]\nbogus = 1", "inline"), /mailbox\.bogus: unknown key/);
  assert.ok(
    configFromText("strict = false\n[mailbox]\nbogus = 1", "inline").warnings.includes(
      "mailbox.bogus: unknown key, ignored",
    ),
  );
});
