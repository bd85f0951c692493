/**
 * Log lines a peer can trigger are rate-limited, checked on the real
 * process at the default level: one 0.35 ClientInfo replayed on hundreds of
 * new connections (each replaces the previous one, which used to write an
 * INFO "replaced by" line per connection, 1,870 a second in the adversarial
 * run) writes a bounded number of lines, and the dropped ones are counted
 * in `log_lines_suppressed_total`.
 */

import assert from "node:assert/strict";
import { clientInfo, connectClient, randomSecretKey, type TestRelayClient } from "./support/relay_client.ts";
import { MainProcess } from "./support/main_process.ts";

const REPLAYS = 300;

async function metric(port: number, re: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(re.exec(text)?.[1] ?? NaN);
}

Deno.test("one 0.35 ClientInfo replayed on 300 connections writes at most ~20 log lines", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/relay.toml`;
  await Deno.writeTextFile(
    path,
    `http_bind_addr = "127.0.0.1:0"\nmetrics_bind_addr = "127.0.0.1:0"\nenable_stun = false\n` +
      // 300 connections from one address: the per-source admission limits are not what this test is about.
      "[limits]\nmax_connections_per_source = 100000\nsource_connects_per_sec = 0\n",
  );
  const main = new MainProcess(["--config", path]);
  const open: TestRelayClient[] = [];
  try {
    const port = Number((await main.waitFor(/relay listening on http:\/\/127\.0\.0\.1:(\d+)/))[1]);
    const metricsPort = Number((await main.waitFor(/metrics on http:\/\/127\.0\.0\.1:(\d+)/))[1]);
    await main.waitFor(/running/);
    const mark = main.log.length;
    const secret = randomSecretKey();
    // The same signed bytes every time: no key material is needed to replay them.
    const replayed = clientInfo(secret);
    for (let i = 0; i < REPLAYS; i++) {
      const c = await connectClient(port, "derp", { secretKey: secret, noHandshake: true });
      await c.sendMsg(replayed);
      open.push(c);
    }
    // The last one is registered once it answers a ping; every earlier one was replaced.
    await open.at(-1)!.ping();
    assert.equal(await metric(metricsPort, /\nrelayserver_accepts_total (\d+)\n/), REPLAYS);
    const lines = main.log.slice(mark).split("\n").filter((l) => l !== "");
    const replaced = lines.filter((l) => / replaced by /.test(l)).length;
    assert.ok(replaced >= 1 && replaced <= 20, `${replaced} "replaced by" lines of ${REPLAYS - 1} replacements`);
    assert.ok(lines.length <= 25, `${lines.length} lines:\n${lines.join("\n")}`);
    const suppressed = await metric(metricsPort, /\nlog_lines_suppressed_total (\d+)\n/);
    assert.ok(suppressed >= REPLAYS - 1 - replaced, `suppressed ${suppressed}`);
  } finally {
    for (const c of open) c.close();
    await main.stop();
    await Deno.remove(dir, { recursive: true });
  }
  // The summary is written at shutdown at the latest.
  assert.match(main.log, /\d+ similar lines suppressed in the last \d+ s \(first: .* replaced by /);
});
