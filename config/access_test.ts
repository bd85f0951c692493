/** The top-level `access` key and its environment overrides (`access.ts`). */

import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import type { Config } from "./schema.ts";
import { assertConfigError, load } from "./test_support.ts";

/** Seeded-style fixed keys (upstream uses a ChaCha8-seeded key; any valid key will do). */
const ID1 = ed25519.getPublicKey(new Uint8Array(32).fill(1));
const ID2 = ed25519.getPublicKey(new Uint8Array(32).fill(2));

Deno.test("validateConfig() reads every access form (test_access_config)", async (t) => {
  const cases: { name: string; toml: string; want: Config["access"] }[] = [
    { name: "everyone", toml: 'access = "everyone"', want: { mode: "everyone" } },
    {
      name: "dotted allowlist, hex",
      toml: `access.allowlist = [\n  "${keyHex(ID1)}",\n]`,
      want: { mode: "allowlist", keys: [ID1] },
    },
    {
      name: "dotted allowlist, base32",
      toml: `access.allowlist = ["${keyBase32(ID1)}", "${keyBase32(ID2).toUpperCase()}"]`,
      want: { mode: "allowlist", keys: [ID1, ID2] },
    },
    {
      name: "[access] table denylist",
      toml: `[access]\ndenylist = ["${keyHex(ID2)}"]`,
      want: { mode: "denylist", keys: [ID2] },
    },
    {
      name: "inline table denylist",
      toml: `access = { denylist = ["${keyHex(ID1)}"] }`,
      want: { mode: "denylist", keys: [ID1] },
    },
    {
      name: "dotted http url",
      toml: 'access.http.url = "https://example.com/foo/bar?boo=baz"',
      want: { mode: "http", url: "https://example.com/foo/bar?boo=baz" },
    },
    {
      name: "dotted http url and bearer_token",
      toml: 'access.http.url = "https://example.com/foo/bar?boo=baz"\naccess.http.bearer_token = "foo"',
      want: { mode: "http", url: "https://example.com/foo/bar?boo=baz", bearerToken: "foo" },
    },
    {
      name: "inline http table",
      toml: 'access.http = { url = "https://example.com/foo" }',
      want: { mode: "http", url: "https://example.com/foo" },
    },
    {
      name: "inline http table with bearer_token",
      toml: 'access.http = { url = "https://example.com/foo", bearer_token = "foo" }',
      want: { mode: "http", url: "https://example.com/foo", bearerToken: "foo" },
    },
    {
      name: "[access.http] table",
      toml: '[access.http]\nurl = "http://127.0.0.1:9/hook"',
      want: { mode: "http", url: "http://127.0.0.1:9/hook" },
    },
    {
      name: "http with max_in_flight (ours)",
      toml: '[access.http]\nurl = "http://127.0.0.1:9/hook"\nmax_in_flight = 8',
      want: { mode: "http", url: "http://127.0.0.1:9/hook", maxInFlight: 8 },
    },
    {
      name: "shared_token",
      toml: 'access.shared_token = ["a", "b"]',
      want: { mode: "shared_token", tokens: ["a", "b"] },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assert.deepEqual(load(c.toml).config.access, c.want));
  }
});

Deno.test("validateConfig() refuses bad access values, naming the key", async (t) => {
  const cases: [string, string, string][] = [
    ["unknown mode string", 'access = "nobody"', "access"],
    ["two modes", `access.allowlist = []\naccess.denylist = []`, "access"],
    ["unknown mode table", "access.whitelist = []", "access.whitelist"],
    ["invalid id", 'access.allowlist = ["nothex"]', "access.allowlist[0]"],
    // y = 2 is not on the curve, so no public key has this encoding.
    [
      "id that is not a curve point",
      `access.denylist = ["${keyHex(ID1)}", "02${"0".repeat(62)}"]`,
      "access.denylist[1]",
    ],
    ["ids not a list", 'access.allowlist = "abc"', "access.allowlist"],
    ["http without url", 'access.http.bearer_token = "x"', "access.http.url"],
    ["http url not a URL", 'access.http.url = "not a url"', "access.http.url"],
    ["http max_in_flight zero", 'access.http = { url = "http://h/", max_in_flight = 0 }', "access.http.max_in_flight"],
    ["access a number", "access = 3", "access"],
  ];
  for (const [name, toml, key] of cases) {
    await t.step(name, () => assertConfigError(() => load(toml), key));
  }
});

Deno.test("validateConfig() rejects an empty shared token list or an empty token (test_access_token_empty_is_rejected)", () => {
  assertConfigError(() => load("access.shared_token = []"), "access.shared_token");
  assertConfigError(() => load('access.shared_token = ["ok", ""]'), "access.shared_token[1]");
});

Deno.test("validateConfig() lets IROH_RELAY_ACCESS_TOKEN replace the access policy, and refuses it empty", () => {
  const env = { env: { IROH_RELAY_ACCESS_TOKEN: "t0k" } };
  assert.deepEqual(load('access = "everyone"', env).config.access, { mode: "shared_token", tokens: ["t0k"] });
  assert.deepEqual(load('access.shared_token = ["a"]', env).config.access, { mode: "shared_token", tokens: ["t0k"] });
  assertConfigError(() => load("", { env: { IROH_RELAY_ACCESS_TOKEN: "" } }), "IROH_RELAY_ACCESS_TOKEN");
});

Deno.test("validateConfig() lets IROH_RELAY_HTTP_BEARER_TOKEN set the http hook token", () => {
  const env = { env: { IROH_RELAY_HTTP_BEARER_TOKEN: "from-env" } };
  assert.deepEqual(load('access.http.url = "http://h/"', env).config.access, {
    mode: "http",
    url: "http://h/",
    bearerToken: "from-env",
  });
});

Deno.test("regression: IROH_RELAY_HTTP_BEARER_TOKEN overrides a bearer_token also set in the file", () => {
  const env = { env: { IROH_RELAY_HTTP_BEARER_TOKEN: "from-env" } };
  const { config } = load('access.http = { url = "http://h/", bearer_token = "from-file" }', env);
  assert.deepEqual(config.access, { mode: "http", url: "http://h/", bearerToken: "from-env" });
});

/** 64 hex characters, written here so the config tests need nothing from relay/. */
function keyHex(key: Uint8Array): string {
  return Array.from(key, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** RFC 4648 base32, lowercase, no padding (52 characters for a key). */
function keyBase32(key: Uint8Array): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const b of key) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += alphabet[(acc >>> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += alphabet[(acc << (5 - bits)) & 31];
  return out;
}
