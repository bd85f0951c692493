import assert from "node:assert/strict";
import { storeCases } from "./_store_cases.ts";
import { SqliteMailboxStore } from "./store_sqlite.ts";

storeCases("SqliteMailboxStore", () => {
  const dir = Deno.makeTempDirSync({ prefix: "mailbox-sqlite-" });
  const path = `${dir}/mailbox.sqlite3`;
  const h = {
    store: new SqliteMailboxStore(path) as SqliteMailboxStore,
    async reopen() {
      await h.store.close();
      h.store = new SqliteMailboxStore(path);
      return h.store;
    },
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
  return Promise.resolve(h);
});

Deno.test("SqliteMailboxStore: TestCreateRelayInternalInvalidDatabasePanics: a bad path is a clear error", () => {
  assert.throws(() => new SqliteMailboxStore("/nonexistent-dir/x/mailbox.sqlite3"), /unable to open|mailbox database/);
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/junk`, "this is not a database".repeat(100));
    assert.throws(() => new SqliteMailboxStore(`${dir}/junk`), /mailbox database .*junk/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("SqliteMailboxStore: WAL journal (synchronous full on request)", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const s = new SqliteMailboxStore(`${dir}/m.sqlite3`, { synchronous: "full" });
    await s.deposit({
      recipient: "a".repeat(64),
      origin: "b".repeat(64),
      txnId: "t",
      body: "{}",
      bytes: 2,
      now: 0,
      expiresAt: 1e15,
    }, { maxEntries: 1, maxBytes: 100, maxTotalBytes: 100 });
    assert.ok(Deno.statSync(`${dir}/m.sqlite3-wal`).isFile, "a -wal file exists while open");
    await s.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
