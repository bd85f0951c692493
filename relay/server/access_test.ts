import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import { type AccessConfig, accessPolicy } from "./access.ts";
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
