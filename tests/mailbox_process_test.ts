/**
 * Nothing acknowledged with 200 is lost (issue 15): the real service
 * (`main.ts --config`, its own process) with the SQLite store, a sender and
 * a recipient written from the spec (tests/support/matrix_peer.ts, not the
 * mailbox's code) exchanging 1,000 transactions across a graceful restart
 * and two `kill -9`s: one while a deposit is in flight, one while the
 * recipient holds an entry it has not acknowledged yet.
 *
 * The recipient must see every transaction at least once, in order (a
 * repeat only ever of the entry it had not acknowledged when both it and
 * the service died). Run with each store (Redis stays up; our process dies). Also: the default data directory, named in the start-up log, and
 * `check-config` with a `[mailbox]` table.
 */

import assert from "node:assert/strict";
import { MatrixPeer, type RelayTxnReply, socketTransport } from "./support/matrix_peer.ts";
import { withTimeout } from "./support/relay_scope.ts";
import { RedisServer } from "./support/redis_server.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const DENO = Deno.execPath();
const dec = new TextDecoder();
const RELAY = "relay.test";
const TOTAL = 1000;

interface Proc {
  port: number;
  output(): string;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL (kill -9) and wait. */
  kill9(): Promise<void>;
}

async function spawnService(configPath: string, env: Record<string, string> = {}): Promise<Proc> {
  const child = new Deno.Command(DENO, {
    args: ["run", "-A", MAIN, "--config", configPath],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn();
  let out = "";
  const found = Promise.withResolvers<number>();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) {
      out = (out + dec.decode(chunk)).slice(-20_000);
      const m = /relay listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) found.resolve(Number(m[1]));
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  child.status.then((s) => found.reject(new Error(`service exited (${s.code}): ${out.slice(-2000)}`)));
  const end = (sig: Deno.Signal) => async () => {
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
    await child.status;
    await pumps;
  };
  try {
    const port = await withTimeout(found.promise, 30_000, "the service to listen");
    return { port, output: () => out, stop: end("SIGTERM"), kill9: end("SIGKILL") };
  } catch (e) {
    await end("SIGKILL")();
    throw e;
  }
}

for (const store of ["sqlite", "redis"] as const) {
  Deno.test(`${store}: 1,000 transactions through the real process across a restart and two kill -9s: all seen, in order`, async () => {
    const redis = store === "redis" ? await RedisServer.start() : null;
    try {
      await exchange(store === "redis" ? `store = "redis"\nredis_url = "${redis!.url}"\n` : "");
    } finally {
      await redis?.close();
    }
  });
}

async function exchange(storeConfig: string): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mailbox-proc-" });
  const config = `${dir}/relay.toml`;
  await Deno.writeTextFile(
    config,
    `http_bind_addr = "127.0.0.1:0"\nenable_stun = false\nenable_metrics = false\n[limits]\nsource_connects_per_sec = 0\n[mailbox]\nserver_names = ["${RELAY}"]\n${storeConfig}` +
      `${storeConfig ? "" : `data_dir = "${dir}/data"\n`}max_entries_per_recipient = ${TOTAL}\n` +
      `sender_rate_per_second = 100000\nsender_burst = 100000\n`,
  );
  const sender = MatrixPeer.generate();
  const recipient = MatrixPeer.generate();
  let proc = await spawnService(config);
  const seen: number[] = [];
  let ack = 0;
  let held: RelayTxnReply | null = null;
  // Deposits txn `k`, retrying (same txnID) across an outage until a 200: that 200 is the promise.
  const deposit = async (k: number) => {
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        const r = await sender.deposit(socketTransport(proc.port), RELAY, recipient.serverName, `txn-${k}`, {
          pdus: [{ seq: k }],
        });
        if (r.status === 200) return;
        throw new Error(`deposit ${k}: ${r.status} ${r.text}`);
      } catch (e) {
        if (attempt === 49) throw e;
        await new Promise((res) => setTimeout(res, 20));
      }
    }
  };
  // Pulls up to `n` entries (Dendrite's paging: each call acknowledges the previous entry).
  const pull = async (n: number) => {
    const t = socketTransport(proc.port);
    for (let k = 0; k < n; k++) {
      const r = await recipient.pull(t, RELAY, ack);
      assert.equal(r.status, 200, r.text);
      const reply = r.json as RelayTxnReply;
      if (!reply.entries_queued) {
        held = null;
        ack = 0;
        return;
      }
      seen.push((reply.transaction.pdus![0] as { seq: number }).seq);
      held = reply;
      ack = reply.entry_id!;
    }
  };
  try {
    for (let k = 0; k < 300; k++) await deposit(k);
    await proc.stop(); // graceful restart
    proc = await spawnService(config);
    for (let k = 300; k < 500; k++) await deposit(k);
    await pull(150);
    assert.ok(held !== null, "the recipient holds an unacknowledged entry");
    await proc.kill9(); // kill -9 while the recipient holds entry `ack`
    // The recipient restarts too and lost what it held: it asks from 0, so that entry must come again.
    const heldSeq = seen.at(-1)!;
    ack = 0;
    proc = await spawnService(config);
    for (let k = 500; k < 700; k++) await deposit(k);
    // kill -9 with a deposit in flight: its answer is lost; the sender retries the same txnID.
    const inFlight = sender.deposit(socketTransport(proc.port), RELAY, recipient.serverName, "txn-700", {
      pdus: [{ seq: 700 }],
    }).catch(() => null);
    await proc.kill9();
    await inFlight;
    proc = await spawnService(config);
    for (let k = 700; k < TOTAL; k++) await deposit(k);
    await pull(TOTAL * 2);
    assert.equal(held, null);
    const unique = new Set(seen);
    assert.equal(
      unique.size,
      TOTAL,
      `every transaction seen: missing ${[...Array(TOTAL).keys()].filter((k) => !unique.has(k)).slice(0, 10)}`,
    );
    for (let k = 1; k < seen.length; k++) {
      assert.ok(seen[k]! >= seen[k - 1]!, `in order at ${k}: ${seen[k - 1]} then ${seen[k]}`);
    }
    console.log(`seen ${seen.length} for ${TOTAL} transactions (${seen.length - TOTAL} repeat(s))`);
    // Exactly one repeat: the entry held unacknowledged when both sides died.
    assert.equal(seen.length, TOTAL + 1);
    assert.equal(seen.filter((k) => k === heldSeq).length, 2);
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("default data directory: works without data_dir and is named in the start-up log", async () => {
  const home = await Deno.makeTempDir({ prefix: "mailbox-home-" });
  const config = `${home}/relay.toml`;
  await Deno.writeTextFile(
    config,
    `http_bind_addr = "127.0.0.1:0"\nenable_stun = false\nenable_metrics = false\n[limits]\nsource_connects_per_sec = 0\n[mailbox]\n`,
  );
  const proc = await spawnService(config, { HOME: home, XDG_STATE_HOME: "", STATE_DIRECTORY: "" });
  try {
    const r = MatrixPeer.generate();
    const s = MatrixPeer.generate();
    assert.equal((await s.deposit(socketTransport(proc.port), "any.name", r.serverName, "t", {})).status, 200);
    const path = `${home}/.local/state/iroh-relay-deno/mailbox.sqlite3`;
    assert.ok((await Deno.stat(path)).isFile);
    assert.ok(proc.output().includes(`sqlite ${path} (synchronous normal) (default data_dir`), proc.output());
  } finally {
    await proc.stop();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("check-config accepts a [mailbox] table and names its mistakes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = async (text: string) => {
      await Deno.writeTextFile(`${dir}/c.toml`, text);
      const out = await new Deno.Command(DENO, {
        args: ["run", "-A", MAIN, "check-config", "--config", `${dir}/c.toml`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code: out.code, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
    };
    const ok = await run('[mailbox]\nserver_names = ["relay.example"]\n');
    assert.equal(ok.code, 0, ok.text);
    assert.match(ok.text, /c\.toml: ok/);
    const bad = await run("[mailbox]\nexpiry_secs = -5\n");
    assert.equal(bad.code, 2);
    assert.match(bad.text, /mailbox\.expiry_secs: must be at least 1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
