import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import { type AccessConfig, AccessHttpGate, accessPolicy } from "./access.ts";
import { keyHex } from "../proto/public_key.ts";

const A = ed25519.getPublicKey(new Uint8Array(32).fill(1));
const B = ed25519.getPublicKey(new Uint8Array(32).fill(2));

Deno.test("accessPolicy() table: everyone, allowlist, denylist, shared_token", async (t) => {
  const cases: { cfg: AccessConfig; key: Uint8Array; token?: string; want: boolean; name: string }[] = [
    { name: "everyone", cfg: { mode: "everyone" }, key: A, want: true },
    { name: "allowlist, listed", cfg: { mode: "allowlist", keys: [A] }, key: A, want: true },
    { name: "allowlist, not listed", cfg: { mode: "allowlist", keys: [A] }, key: B, want: false },
    { name: "allowlist, empty", cfg: { mode: "allowlist", keys: [] }, key: A, want: false },
    { name: "denylist, listed", cfg: { mode: "denylist", keys: [A] }, key: A, want: false },
    { name: "denylist, not listed", cfg: { mode: "denylist", keys: [A] }, key: B, want: true },
    {
      name: "shared_token, right token",
      cfg: { mode: "shared_token", tokens: ["x", "secret"] },
      key: A,
      token: "secret",
      want: true,
    },
    { name: "shared_token, no token", cfg: { mode: "shared_token", tokens: ["secret"] }, key: A, want: false },
    {
      name: "shared_token, wrong token",
      cfg: { mode: "shared_token", tokens: ["secret"] },
      key: A,
      token: "secreT",
      want: false,
    },
    {
      name: "shared_token, prefix",
      cfg: { mode: "shared_token", tokens: ["secret"] },
      key: A,
      token: "secre",
      want: false,
    },
    {
      name: "shared_token, empty token",
      cfg: { mode: "shared_token", tokens: ["secret"] },
      key: A,
      token: "",
      want: false,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const p = accessPolicy(c.cfg);
      assert.equal(p.mode, c.cfg.mode);
      assert.equal(await p.allows(c.token === undefined ? { key: c.key } : { key: c.key, token: c.token }), c.want);
    });
  }
});

/** A fetch stand-in recording requests and answering with `reply`. */
function fakeFetch(reply: () => Response | Promise<Response>) {
  const calls: { url: string; method: string; headers: Headers; body: unknown; signal: unknown }[] = [];
  const fn = ((url: string, init: RequestInit) => {
    calls.push({
      url,
      method: init.method ?? "GET",
      headers: new Headers(init.headers),
      body: init.body,
      signal: init.signal,
    });
    return Promise.resolve().then(reply);
  }) as unknown as typeof fetch;
  return { fn, calls };
}

Deno.test("accessPolicy() http POSTs X-Iroh-NodeId (64 hex) and the bearer token, with no body", async () => {
  const f = fakeFetch(() => new Response("true"));
  const p = accessPolicy({ mode: "http", url: "https://example.com/foo?x=1", bearerToken: "tok" }, { fetch: f.fn });
  assert.equal(await p.allows({ key: A }), true);
  assert.equal(f.calls.length, 1);
  const c = f.calls[0]!;
  assert.equal(c.url, "https://example.com/foo?x=1");
  assert.equal(c.method, "POST");
  assert.equal(c.headers.get("X-Iroh-NodeId"), keyHex(A));
  assert.match(c.headers.get("X-Iroh-NodeId")!, /^[0-9a-f]{64}$/);
  assert.equal(c.headers.get("Authorization"), "Bearer tok");
  assert.equal(c.body, undefined);
  assert.ok(c.signal instanceof AbortSignal, "the hook call is bounded by a timeout");
});

Deno.test("accessPolicy() http sends no Authorization without a token", async () => {
  const f = fakeFetch(() => new Response("true"));
  await accessPolicy({ mode: "http", url: "http://h/" }, { fetch: f.fn }).allows({ key: A });
  assert.equal(f.calls[0]!.headers.get("Authorization"), null);
});

Deno.test("accessPolicy() http allows only status 200 with body exactly 'true'", async (t) => {
  const cases: [string, () => Response | Promise<Response>, boolean][] = [
    ["200 true", () => new Response("true"), true],
    ["200 True", () => new Response("True"), false],
    ["200 true + newline", () => new Response("true\n"), false],
    ["200 false", () => new Response("false"), false],
    ["200 empty", () => new Response(""), false],
    ["201 true", () => new Response("true", { status: 201 }), false],
    ["403 true", () => new Response("true", { status: 403 }), false],
    ["network error", () => Promise.reject(new TypeError("connection refused")), false],
  ];
  for (const [name, reply, want] of cases) {
    await t.step(name, async () => {
      const warnings: string[] = [];
      const f = fakeFetch(reply);
      const p = accessPolicy({ mode: "http", url: "http://h/" }, { fetch: f.fn, warn: (m) => warnings.push(m) });
      assert.equal(await p.allows({ key: B }), want);
      if (name === "network error") assert.equal(warnings.length, 1);
    });
  }
});

/** A real HTTP hook on 127.0.0.1 whose behaviour the test picks per path, counting requests in flight. */
class Hook {
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  inFlight = 0;
  peak = 0;
  hits = new Map<string, number>();
  #release = Promise.withResolvers<void>();

  constructor() {
    this.server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => this.#handle(req));
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.server.addr.port}${path}`;
  }

  /** Lets every request held by `/hold` answer. */
  release(): void {
    this.#release.resolve();
  }

  async #handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    this.hits.set(path, (this.hits.get(path) ?? 0) + 1);
    this.inFlight++;
    this.peak = Math.max(this.peak, this.inFlight);
    try {
      switch (path) {
        case "/hold":
          await this.#release.promise;
          return new Response("true");
        case "/big":
          // 50 MB announced by Content-Length (streamed lazily, so the hook in this process holds little).
          return new Response(fiftyMegabytes(), { headers: { "content-length": String(50 * 1024 * 1024) } });
        case "/big-chunked":
          // 50 MB without a length.
          return new Response(fiftyMegabytes());
        case "/redirect":
          return new Response(null, { status: 302, headers: { location: "/allow" } });
        case "/allow":
          return new Response("true");
        case "/forbidden":
          return new Response("no", { status: 403 });
        case "/error":
          return new Response("oops", { status: 500 });
        default:
          return new Response("false");
      }
    } finally {
      this.inFlight--;
    }
  }

  async close(): Promise<void> {
    this.release();
    await this.server.shutdown();
  }
}

/** 50 MiB of `t`, produced 1 MiB at a time as the reader pulls. */
function fiftyMegabytes(): ReadableStream<Uint8Array> {
  let sent = 0;
  const chunk = new Uint8Array(1024 * 1024).fill(0x74);
  return new ReadableStream({
    pull(c) {
      if (sent++ >= 50) c.close();
      else c.enqueue(chunk);
    },
  });
}

function keyN(i: number): Uint8Array {
  const k = new Uint8Array(32);
  new DataView(k.buffer).setUint32(0, i);
  return k;
}

Deno.test("accessPolicy() http against a real hook: verdicts, redirects not followed, failures counted by reason", async () => {
  const hook = new Hook();
  const gate = new AccessHttpGate();
  const warnings: string[] = [];
  const check = (path: string) =>
    accessPolicy({ mode: "http", url: hook.url(path) }, { gate, warn: (m) => warnings.push(m) }).check({ key: A });
  try {
    assert.equal(await check("/allow"), "allow");
    assert.equal(await check("/deny"), "deny");
    assert.equal(await check("/forbidden"), "deny");
    assert.equal(await check("/error"), "unavailable");
    assert.equal(await check("/redirect"), "unavailable");
    assert.equal(hook.hits.get("/allow"), 1, "the redirect was not followed");
    assert.equal(gate.failures.redirect, 1);
    assert.equal(gate.failures.status, 1);
    assert.equal(warnings.length, 2);
    assert.match(warnings.join("\n"), /failed \(redirect\): status 302; redirects are not followed/);
  } finally {
    await hook.close();
  }
});

Deno.test("accessPolicy() http reads at most 64 KiB of an answer: 50 MB × 20 checks keep RSS flat", async () => {
  const hook = new Hook();
  const gate = new AccessHttpGate();
  try {
    for (const path of ["/big", "/big-chunked"]) {
      const p = accessPolicy({ mode: "http", url: hook.url(path) }, { gate });
      const rss0 = Deno.memoryUsage().rss;
      const verdicts = await Promise.all(Array.from({ length: 20 }, (_, i) => p.check({ key: keyN(i) })));
      const grown = Deno.memoryUsage().rss - rss0;
      assert.deepEqual(new Set(verdicts), new Set(["unavailable"]), path);
      // Before the cap, 10 such answers grew RSS by ~490 MB.
      assert.ok(grown < 64 * 1024 * 1024, `${path}: RSS grew ${Math.round(grown / 1e6)} MB`);
    }
    assert.equal(gate.failures.body_too_large, 40);
  } finally {
    await hook.close();
  }
});

Deno.test("accessPolicy() http caps requests in flight; a full queue refuses at once; one key costs one request", async () => {
  const hook = new Hook();
  const gate = new AccessHttpGate(8);
  const p = accessPolicy({ mode: "http", url: hook.url("/hold") }, { gate });
  try {
    // 8 run, 32 (4 × 8) wait, the rest are refused without a request.
    const checks = Array.from({ length: 100 }, (_, i) => p.check({ key: keyN(i) }));
    const refused = await Promise.all(checks.slice(40));
    assert.deepEqual(new Set(refused), new Set(["unavailable"]));
    assert.equal(gate.failures.busy, 60);
    assert.equal(gate.inFlight, 8);
    assert.equal(gate.queued, 32);
    // The same key asked 50 more times while its check is pending: no new request, no queue slot.
    const same = Array.from({ length: 50 }, () => p.check({ key: keyN(0) }));
    assert.equal(gate.failures.busy, 60);
    hook.release();
    assert.deepEqual(new Set(await Promise.all([...checks.slice(0, 40), ...same])), new Set(["allow"]));
    assert.ok(hook.peak <= 8, `peak ${hook.peak} requests at the hook`);
    assert.equal(hook.hits.get("/hold"), 40);
    assert.equal(gate.inFlight, 0);
  } finally {
    await hook.close();
  }
});

Deno.test("accessPolicy() http: a hook that never answers times out (queue wait included) and frees its slot", async () => {
  const hook = new Hook();
  const gate = new AccessHttpGate(1);
  const p = accessPolicy({ mode: "http", url: hook.url("/hold") }, { gate, timeoutMs: 300 });
  try {
    const t0 = performance.now();
    const [first, second] = await Promise.all([p.check({ key: keyN(1) }), p.check({ key: keyN(2) })]);
    assert.equal(first, "unavailable");
    assert.equal(second, "unavailable");
    assert.ok(performance.now() - t0 < 2000);
    assert.equal(gate.failures.timeout, 1);
    assert.equal(gate.failures.busy, 1, "the queued check gave up at the same deadline");
    assert.equal(gate.inFlight, 0);
    assert.equal(gate.queued, 0);
  } finally {
    await hook.close();
  }
});
