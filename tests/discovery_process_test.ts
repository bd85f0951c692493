/**
 * Discovery as an operator runs it: `main.ts --config` processes.
 * - SQLite: PUTs in flight while the process is killed with SIGKILL, then
 *   a clean restart: every PUT that was answered 204 is served afterwards.
 * - Redis: two instances on one `redis-server`; a PUT to one is answered by
 *   the other's DNS and pkarr GET.
 * - `check-config` validates the `[discovery]` table.
 */

import assert from "node:assert/strict";
import { withTimeout } from "./support/relay_scope.ts";
import { RedisServer } from "./support/redis_server.ts";
import { ensureDig, parseDig, run } from "./support/discovery_stack.ts";
import { irohTxt, nowUs, relayPayload, testKey } from "./support/pkarr_packet.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const EDGE = new URL("../deploy/edge.ts", import.meta.url).pathname;
const DENO = Deno.execPath();
const dec = new TextDecoder();

interface Instance {
  http: number;
  dns: number;
  /** The metrics port (its `/healthz` has the service details). */
  metrics: number;
  child: Deno.ChildProcess;
  output(): string;
  /** SIGTERM (clean) or SIGKILL. */
  stop(signal?: Deno.Signal): Promise<void>;
}

async function startMain(toml: string): Promise<Instance> {
  const path = await Deno.makeTempFile({ prefix: "disc-proc-", suffix: ".toml" });
  await Deno.writeTextFile(path, toml);
  const child = new Deno.Command(DENO, {
    args: ["run", "-A", MAIN, "--config", path],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let out = "";
  const ready = Promise.withResolvers<{ http: number; dns: number; metrics: number }>();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) {
      out = (out + dec.decode(chunk)).slice(-20_000);
      const h = /relay listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      const d = /DNS listening on 127\.0\.0\.1:(\d+)/.exec(out);
      const m = /metrics on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (h && d && m) ready.resolve({ http: Number(h[1]), dns: Number(d[1]), metrics: Number(m[1]) });
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  child.status.then((s) => ready.reject(new Error(`main.ts exited (${s.code}): ${out.slice(-2000)}`)));
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
    await child.status;
    await pumps;
  };
  try {
    const ports = await withTimeout(ready.promise, 30_000, "main.ts to listen");
    return { ...ports, child, output: () => out, stop };
  } catch (e) {
    await stop("SIGKILL");
    throw e;
  } finally {
    await Deno.remove(path);
  }
}

function toml(discovery: string): string {
  return [
    'http_bind_addr = "127.0.0.1:0"',
    "enable_stun = false",
    'metrics_bind_addr = "127.0.0.1:0"',
    // Every client here is 127.0.0.1: the per-source connection rate is not what these tests are about.
    "[limits]",
    "source_connects_per_sec = 0",
    "[discovery]",
    'origins = ["dns.example.org", "."]',
    'dns_bind_addr = "127.0.0.1:0"',
    'pkarr_put_rate_limit = "disabled"',
    discovery,
  ].join("\n");
}

Deno.test("SQLite store: every PUT answered 204 survives SIGKILL mid-load and a clean restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "disc-kill-" });
  const cfg = toml(`data_dir = ${JSON.stringify(dir)}`);
  try {
    const a = await startMain(cfg);
    const keys = Array.from({ length: 400 }, () => testKey());
    const bodies = keys.map((k) =>
      relayPayload(k, nowUs(), irohTxt(k, [`relay=https://${k.z32.slice(0, 8)}.example/`]))
    );
    const acked: number[] = [];
    let next = 0;
    let killed = false;
    const killAt = Promise.withResolvers<void>();
    const worker = async () => {
      while (next < keys.length) {
        const i = next++;
        try {
          const res = await fetch(`http://127.0.0.1:${a.http}/pkarr/${keys[i]!.z32}`, {
            method: "PUT",
            body: bodies[i]!.slice(),
          });
          await res.body?.cancel();
          if (res.status === 204 && !killed) acked.push(i);
          if (acked.length >= 150) killAt.resolve();
        } catch {
          // connection refused or reset: the process is gone; not acknowledged
        }
      }
      killAt.resolve();
    };
    const workers = Array.from({ length: 16 }, worker);
    await killAt.promise;
    // PUTs are still being sent by the other workers while the process dies.
    await a.stop("SIGKILL");
    killed = true;
    await Promise.all(workers);
    assert.ok(acked.length >= 150, `only ${acked.length} PUTs acknowledged`);
    assert.ok(acked.length < keys.length, "the kill came after every PUT: nothing was in flight");

    const b = await startMain(cfg);
    try {
      for (const i of acked) {
        const res = await fetch(`http://127.0.0.1:${b.http}/pkarr/${keys[i]!.z32}`);
        assert.equal(res.status, 200, `key ${i} lost after SIGKILL`);
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bodies[i]);
      }
    } finally {
      await b.stop();
    }
    const c = await startMain(cfg);
    try {
      const i = acked[acked.length - 1]!;
      const res = await fetch(`http://127.0.0.1:${c.http}/pkarr/${keys[i]!.z32}`);
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bodies[i]);
      const health = await (await fetch(`http://127.0.0.1:${c.metrics}/healthz`)).json();
      assert.equal(health.discovery.store, "sqlite");
      assert.equal(health.discovery.healthy, true);
      assert.ok(health.discovery.packets >= acked.length, JSON.stringify(health));
    } finally {
      await c.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Redis store: two instances on one Redis; PUT on one, DNS and GET on the other", async () => {
  await ensureDig();
  const redis = await RedisServer.start();
  const cfg = toml(`store = "redis"\nredis_url = "${redis.url}"`);
  let a: Instance | undefined;
  let b: Instance | undefined;
  try {
    a = await startMain(cfg);
    b = await startMain(cfg);
    const k = testKey();
    const body = relayPayload(k, nowUs(), irohTxt(k, ["relay=https://shared.example/", "addr=192.0.2.1:4433"]));
    const res = await fetch(`http://127.0.0.1:${a.http}/pkarr/${k.z32}`, { method: "PUT", body: body.slice() });
    await res.body?.cancel();
    assert.equal(res.status, 204);
    const got = await fetch(`http://127.0.0.1:${b.http}/pkarr/${k.z32}`);
    assert.deepEqual(new Uint8Array(await got.arrayBuffer()), body);
    for (const mode of ["+notcp", "+tcp"]) {
      const recs = parseDig(
        await run("dig", [
          "@127.0.0.1",
          "-p",
          String(b.dns),
          mode,
          "+noall",
          "+answer",
          "TXT",
          `_iroh.${k.z32}.dns.example.org`,
        ]),
      );
      assert.deepEqual(recs.map((r) => r.data), ['"relay=https://shared.example/"', '"addr=192.0.2.1:4433"']);
    }
    // A newer packet through B replaces it for A as well.
    const newer = relayPayload(k, nowUs() + 1000n, irohTxt(k, ["relay=https://moved.example/"]));
    const r2 = await fetch(`http://127.0.0.1:${b.http}/pkarr/${k.z32}`, { method: "PUT", body: newer.slice() });
    await r2.body?.cancel();
    const recs = parseDig(
      await run("dig", ["@127.0.0.1", "-p", String(a.dns), "+noall", "+answer", "TXT", `_iroh.${k.z32}.`]),
    );
    assert.deepEqual(recs.map((r) => r.data), ['"relay=https://moved.example/"']);
    const health = await (await fetch(`http://127.0.0.1:${a.metrics}/healthz`)).json();
    assert.deepEqual([health.discovery.store, health.discovery.healthy], ["redis", true]);
  } finally {
    await a?.stop();
    await b?.stop();
    await redis.close();
  }
});

Deno.test("the edge entry (deno serve deploy/edge.ts) serves /pkarr and /dns-query from a [discovery] table", async () => {
  const dir = await Deno.makeTempDir({ prefix: "disc-edge-" });
  const cfgPath = `${dir}/relay.toml`;
  await Deno.writeTextFile(
    cfgPath,
    `[discovery]\norigins = ["dns.example.org"]\npkarr_put_rate_limit = "disabled"\ndata_dir = ${
      JSON.stringify(dir)
    }\n`,
  );
  const child = new Deno.Command(DENO, {
    args: ["serve", "-A", "--host", "127.0.0.1", "--port", "0", EDGE],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", RELAY_CONFIG: cfgPath },
  }).spawn();
  let out = "";
  const ready = Promise.withResolvers<number>();
  const pump = async (st: ReadableStream<Uint8Array>) => {
    for await (const chunk of st) {
      out = (out + dec.decode(chunk)).slice(-20_000);
      const m = /Listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) ready.resolve(Number(m[1]));
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  child.status.then((st) => ready.reject(new Error(`deno serve exited (${st.code}): ${out.slice(-2000)}`)));
  try {
    const port = await withTimeout(ready.promise, 30_000, "deno serve to listen");
    const k = testKey();
    const body = relayPayload(k, nowUs(), irohTxt(k, ["relay=https://edge.example/"]));
    const put = await fetch(`http://127.0.0.1:${port}/pkarr/${k.z32}`, { method: "PUT", body: body.slice() });
    await put.body?.cancel();
    assert.equal(put.status, 204);
    const got = await fetch(`http://127.0.0.1:${port}/pkarr/${k.z32}`);
    assert.deepEqual(new Uint8Array(await got.arrayBuffer()), body);
    const doh = await fetch(`http://127.0.0.1:${port}/dns-query?name=_iroh.${k.z32}.dns.example.org&type=TXT`, {
      headers: { accept: "application/dns-json" },
    });
    const j = await doh.json();
    assert.deepEqual(j.Answer.map((a: { data: string }) => a.data), ['"relay=https://edge.example/"']);
    // The edge has no metrics port; its public /healthz says only status and version.
    const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
    assert.deepEqual(Object.keys(health).sort(), ["status", "version"]);
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // gone
    }
    await child.status;
    await pumps;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check-config validates [discovery]", async () => {
  const path = await Deno.makeTempFile({ suffix: ".toml" });
  try {
    const check = async (text: string) => {
      await Deno.writeTextFile(path, text);
      const out = await new Deno.Command(DENO, {
        args: ["run", "-A", MAIN, "check-config", "--config", path],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code: out.code, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
    };
    const ok = await check('[discovery]\norigins = ["dns.example.org", "."]\ndns_bind_addr = "0.0.0.0:53"');
    assert.equal(ok.code, 0, ok.text);
    const bad = [
      ['[discovery]\ndns_bind_addr = "0.0.0.0:53"', /discovery\.origins.*required/],
      ['[discovery]\norigins = ["bad name!"]', /discovery\.origins.*not a DNS name/],
      ['[discovery]\norigins = ["."]\npkarr_put_rate_limit = "fast"', /pkarr_put_rate_limit/],
      ['[discovery]\norigins = ["."]\nstore = "sqlite"\nredis_url = "redis://x"', /redis_url.*only applies/],
      ['[discovery]\norigins = ["."]\neviction_age_secs = 0', /eviction_age_secs.*at least 1/],
    ] as const;
    for (const [text, re] of bad) {
      const r = await check(text);
      assert.equal(r.code, 2, text);
      assert.match(r.text, re);
    }
  } finally {
    await Deno.remove(path);
  }
});
