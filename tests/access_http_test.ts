/**
 * The `access.http` hook as an outbound dependency, over real sockets: a
 * real HTTP hook on loopback, real relay clients. A reload re-checks
 * connected clients a few at a time, keeps them when the hook is down
 * (new connections still fail closed), and `main.ts` does the same on
 * SIGHUP, with the failures on the metrics port.
 */

import assert from "node:assert/strict";
import { ACCESS_RECHECK_CONCURRENCY } from "../relay/server/relay_core.ts";
import { type ClientKind, connectClient, type TestRelayClient } from "./support/relay_client.ts";
import { withRelay } from "./support/relay_scope.ts";
import { MainProcess } from "./support/main_process.ts";

/** A hook on 127.0.0.1 that allows everyone, can hold its answers, and counts requests in flight. */
class Hook {
  server: Deno.HttpServer<Deno.NetAddr>;
  inFlight = 0;
  peak = 0;
  requests = 0;
  #hold: PromiseWithResolvers<void> | null = null;
  #arrivals: { n: number; resolve: () => void }[] = [];

  constructor() {
    this.server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
      this.requests++;
      this.inFlight++;
      this.peak = Math.max(this.peak, this.inFlight);
      this.#arrivals = this.#arrivals.filter((a) => {
        if (this.inFlight < a.n) return true;
        a.resolve();
        return false;
      });
      try {
        if (this.#hold) await this.#hold.promise;
        return new Response("true");
      } finally {
        this.inFlight--;
      }
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.server.addr.port}/hook`;
  }

  /** Answers wait until {@link release}. */
  hold(): void {
    this.#hold = Promise.withResolvers<void>();
  }

  release(): void {
    this.#hold?.resolve();
    this.#hold = null;
  }

  /** Resolves once `n` requests are in flight at once. */
  inFlightReaches(n: number): Promise<void> {
    if (this.inFlight >= n) return Promise.resolve();
    const w = Promise.withResolvers<void>();
    this.#arrivals.push({ n, resolve: w.resolve });
    return w.promise;
  }

  async close(): Promise<void> {
    this.release();
    await this.server.shutdown();
  }
}

const KINDS: ClientKind[] = ["derp", "v2"];

Deno.test("access reload re-checks connected clients at most 8 at a time, and keeps them all when the hook is down", async () => {
  const hook = new Hook();
  try {
    await withRelay({ toml: `access.http.url = "${hook.url}"\n` }, async (s) => {
      const clients: TestRelayClient[] = [];
      for (let i = 0; i < 40; i++) clients.push(await s.connect(KINDS[i % 2]!));
      assert.equal(hook.requests, 40);

      // A slow hook: the re-check runs, but never more than ACCESS_RECHECK_CONCURRENCY requests at once.
      hook.hold();
      hook.peak = 0;
      const recheck = s.relay.core.setAccess({ mode: "http", url: hook.url });
      await hook.inFlightReaches(ACCESS_RECHECK_CONCURRENCY);
      hook.release();
      const r = await recheck;
      assert.deepEqual(r, { checked: 40, revoked: 0, kept: 0 });
      assert.equal(hook.peak, ACCESS_RECHECK_CONCURRENCY, `peak ${hook.peak} requests in flight`);

      // The hook goes away: a reload keeps every connected client...
      await hook.server.shutdown();
      const down = await s.relay.core.setAccess({ mode: "http", url: hook.url });
      assert.deepEqual(down, { checked: 40, revoked: 0, kept: 40 });
      for (const c of clients) await c.ping();
      // ...while a new connection fails closed.
      const late = await connectClient(s.port, "derp");
      s.own(late);
      assert.equal((await late.nextOf("Health")).problem, "not authenticated");
      const late1x = await connectClient(s.port, "v2").then(() => null, (e: Error) => e);
      assert.match(String(late1x), /ServerDeniesAuth|not authorized/);
      assert.match(
        s.relay.core.metrics.render(),
        /\naccess_http_failures_total\{reason="network"\} (4[2-9]|[5-9]\d)\n/,
      );
    });
  } finally {
    await hook.close().catch(() => {});
  }
});

Deno.test("SIGHUP with the access hook down keeps every connected client; new ones are refused; metrics count it", async () => {
  const hook = new Hook();
  const dir = await Deno.makeTempDir();
  const path = `${dir}/relay.toml`;
  await Deno.writeTextFile(
    path,
    `http_bind_addr = "127.0.0.1:0"\nmetrics_bind_addr = "127.0.0.1:0"\nenable_stun = false\naccess.http.url = "${hook.url}"\n`,
  );
  const main = new MainProcess(["--config", path]);
  const open: TestRelayClient[] = [];
  try {
    const port = Number((await main.waitFor(/relay listening on http:\/\/127\.0\.0\.1:(\d+)/))[1]);
    const metricsPort = Number((await main.waitFor(/metrics on http:\/\/127\.0\.0\.1:(\d+)/))[1]);
    await main.waitFor(/running/);
    for (let i = 0; i < 20; i++) open.push(await connectClient(port, KINDS[i % 2]!));
    for (const c of open) await c.ping();
    await hook.server.shutdown();

    const mark = main.log.length;
    main.child.kill("SIGHUP");
    await main.waitFor(
      /access control reloaded \(http\); 0 connection\(s\) no longer allowed were closed, 20 kept because/,
      mark,
    );
    // The certificate reload part of SIGHUP is not held up (plain HTTP here: nothing to re-read).
    for (const c of open) await c.ping();
    const late = await connectClient(port, "derp");
    open.push(late);
    assert.equal((await late.nextOf("Health")).problem, "not authenticated");
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const failures = Number(/\naccess_http_failures_total\{reason="network"\} (\d+)\n/.exec(text)?.[1]);
    assert.ok(failures >= 21, `network failures ${failures}`);
    assert.match(text, /\naccess_http_checks_in_flight 0\n/);
    // Two lines per failed check before the limiter; now the burst, then a summary later.
    const hookLines = main.log.slice(mark).split("\n").filter((l) => /access http hook .* failed/.test(l)).length;
    assert.ok(hookLines <= 11, `${hookLines} hook failure lines`);
  } finally {
    for (const c of open) c.close();
    await main.stop();
    await hook.close().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("access.http.max_in_flight caps handshakes asking the hook at once; the gauge shows it", async () => {
  const hook = new Hook();
  try {
    await withRelay({ toml: `access.http = { url = "${hook.url}", max_in_flight = 2 }\n` }, async (s) => {
      hook.hold();
      // Ten 1.x handshakes at once: two ask the hook, eight wait in the queue (2 × 4 fit).
      const pending = Array.from({ length: 10 }, () => s.connect("v2"));
      await hook.inFlightReaches(2);
      assert.match(s.relay.core.metrics.render(), /\naccess_http_checks_in_flight 2\n/);
      hook.release();
      const clients = await Promise.all(pending);
      assert.equal(clients.length, 10);
      assert.equal(hook.peak, 2);
      assert.match(s.relay.core.metrics.render(), /\naccess_http_checks_in_flight 0\n/);
    });
  } finally {
    await hook.close();
  }
});
