import assert from "node:assert/strict";
import {
  checkClientAuthHeader,
  classifyUpgrade,
  header,
  HttpError,
  isRelayPath,
  MAX_HEAD_BYTES,
  parseRequestHead,
  presentedToken,
  requestBodyLength,
  type RequestHead,
  serializeResponse,
  wantsClose,
  WsVersionError,
} from "./http1.ts";
import { utf8 } from "../../tests/support/bytes.ts";

/** Spec §3.2 fast-path header vector (km = 00 01 … 1f). */
const FAST_PATH_HEADER =
  "GX9rI-FshTLGq8g4-s1ep4m-DHaykgM0A5v6iz02jWFAQb98VXtFUshaBKOJKabtiBrsmgnPjpFdRpJqAzcy9jOAPc-kOvzLgXjeT9vCG8qx2yO7aDoF4n5vbE4kJbh2CBAREhMUFRYXGBkaGxwdHh8";

function parse(text: string): { head: RequestHead; length: number } {
  const r = parseRequestHead(utf8(text));
  assert.ok(r, "head incomplete");
  return r;
}

function head(headers: [string, string][], path = "/relay"): RequestHead {
  return { method: "GET", path, query: "", version: "HTTP/1.1", headers };
}

function assertHttpError(fn: () => unknown, status: number, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof HttpError, `expected HttpError, got ${e}`);
    assert.equal(e.status, status);
    if (message) assert.match(e.message, message);
    return true;
  });
}

const WS: [string, string][] = [
  ["upgrade", "websocket"],
  ["connection", "Upgrade"],
  ["sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="],
  ["sec-websocket-version", "13"],
];

Deno.test("parseRequestHead() parses the exact 0.35 derp request (CRLF)", () => {
  const text = "GET /relay HTTP/1.1\r\nupgrade: iroh derp http\r\nhost: relay.example.org:3340\r\n\r\n";
  const { head: h, length } = parse(text + "\x04rest");
  assert.equal(length, text.length);
  assert.deepEqual(h, {
    method: "GET",
    path: "/relay",
    query: "",
    version: "HTTP/1.1",
    headers: [["upgrade", "iroh derp http"], ["host", "relay.example.org:3340"]],
  });
});

Deno.test("parseRequestHead() accepts bare LF line ends, and mixed ones", () => {
  const lf = parse("GET /ping?x=1 HTTP/1.1\nHost: a\nX-Y:  z  \n\n");
  assert.equal(lf.head.path, "/ping");
  assert.equal(lf.head.query, "x=1");
  assert.deepEqual(lf.head.headers, [["host", "a"], ["x-y", "z"]]);
  assert.equal(lf.length, "GET /ping?x=1 HTTP/1.1\nHost: a\nX-Y:  z  \n\n".length);
  const mixed = parse("GET / HTTP/1.0\r\nHost: a\n\r\n");
  assert.equal(mixed.head.version, "HTTP/1.0");
  assert.equal(mixed.length, "GET / HTTP/1.0\r\nHost: a\n\r\n".length);
});

Deno.test("parseRequestHead() returns null until the blank line arrives", () => {
  const text = "GET /relay HTTP/1.1\r\nHost: a\r\n\r\n";
  for (let i = 0; i < text.length; i++) assert.equal(parseRequestHead(utf8(text.slice(0, i))), null, `prefix ${i}`);
  assert.ok(parseRequestHead(utf8(text)));
});

Deno.test("parseRequestHead() answers 431 to a head larger than 16 KiB or with too many fields", () => {
  const big = "GET / HTTP/1.1\r\nX-Big: " + "a".repeat(MAX_HEAD_BYTES) + "\r\n";
  assertHttpError(() => parseRequestHead(utf8(big)), 431);
  let many = "GET / HTTP/1.1\r\n";
  for (let i = 0; i < 101; i++) many += `X-H${i}: v\r\n`;
  assertHttpError(() => parseRequestHead(utf8(many + "\r\n")), 431);
  // Just under the limit is fine.
  const ok = "GET / HTTP/1.1\r\nX-Big: " + "a".repeat(MAX_HEAD_BYTES - 100) + "\r\n\r\n";
  assert.ok(parseRequestHead(utf8(ok)));
});

Deno.test("parseRequestHead() answers 400 to malformed lines", async (t) => {
  const cases: [string, string, number][] = [
    ["two-part request line", "GET /\r\n\r\n", 400],
    ["four-part request line", "GET / HTTP/1.1 x\r\n\r\n", 400],
    ["empty request line", "\r\n\r\n", 400],
    ["method with a bad character", "GE(T / HTTP/1.1\r\n\r\n", 400],
    ["not HTTP", "GET / FOO/1.1\r\n\r\n", 400],
    ["HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 505],
    ["target with a control character", "GET /a\x01b HTTP/1.1\r\n\r\n", 400],
    ["target that is not a path or URL", "GET relay HTTP/1.1\r\n\r\n", 400],
    ["header line without colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", 400],
    ["header with an empty name", "GET / HTTP/1.1\r\n: v\r\n\r\n", 400],
    ["space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400],
    ["obsolete line folding", "GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n", 400],
  ];
  for (const [name, text, status] of cases) {
    await t.step(name, () => assertHttpError(() => parseRequestHead(utf8(text)), status));
  }
});

Deno.test("parseRequestHead() keeps only the path and query of an absolute-form target", () => {
  assert.equal(parse("GET http://relay.example.org.:3340/relay?token=a HTTP/1.1\r\n\r\n").head.path, "/relay");
  assert.equal(parse("GET http://relay.example.org.:3340/relay?token=a HTTP/1.1\r\n\r\n").head.query, "token=a");
  assert.equal(parse("GET https://h HTTP/1.1\r\n\r\n").head.path, "/");
  assert.equal(parse("GET http://[::1]:80/ping HTTP/1.1\r\n\r\n").head.path, "/ping");
});

Deno.test("regression: an absolute-form target with a query but no path means path /", () => {
  const { head } = parse("GET http://h?q=1 HTTP/1.1\r\n\r\n");
  assert.equal(head.path, "/");
  assert.equal(head.query, "q=1");
});

Deno.test("header() returns the first value of a lowercased name", () => {
  const { head: h } = parse("GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
  assert.equal(header(h, "x-a"), "1");
  assert.equal(header(h, "x-b"), undefined);
});

Deno.test("wantsClose() follows HTTP/1.1 and HTTP/1.0 defaults", () => {
  assert.equal(wantsClose(parse("GET / HTTP/1.1\r\n\r\n").head), false);
  assert.equal(wantsClose(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").head), true);
  assert.equal(wantsClose(parse("GET / HTTP/1.0\r\n\r\n").head), true);
  assert.equal(wantsClose(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").head), false);
});

Deno.test("requestBodyLength() reads Content-Length and refuses chunked or malformed bodies", () => {
  assert.equal(requestBodyLength(parse("GET / HTTP/1.1\r\n\r\n").head), 0);
  assert.equal(requestBodyLength(parse("GET / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").head), 12);
  assertHttpError(() => requestBodyLength(parse("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").head), 400);
  assertHttpError(() => requestBodyLength(parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").head), 501);
});

Deno.test("requestBodyLength() refuses repeated or conflicting Content-Length and TE with CL (smuggling)", () => {
  const cases = [
    "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
    "POST / HTTP/1.1\r\ncontent-length: 3\r\nCONTENT-LENGTH: 3\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: identity\r\n\r\n",
  ];
  for (const c of cases) assertHttpError(() => requestBodyLength(parse(c).head), 400);
  assertHttpError(
    () => requestBodyLength(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").head),
    501,
    /not supported/,
  );
});

Deno.test("isRelayPath() accepts /relay and the legacy /derp only", () => {
  assert.equal(isRelayPath("/relay"), true);
  assert.equal(isRelayPath("/derp"), true);
  assert.equal(isRelayPath("/relay/"), false);
  assert.equal(isRelayPath("/"), false);
});

Deno.test("classifyUpgrade() detects the generation of each request kind (spec §0)", async (t) => {
  const cases: { name: string; headers: [string, string][]; want: ReturnType<typeof classifyUpgrade> }[] = [
    { name: "0.35 derp upgrade", headers: [["upgrade", "iroh derp http"], ["host", "h"]], want: { kind: "derp" } },
    {
      name: "derp upgrade wins even with WebSocket headers",
      headers: [["upgrade", "iroh derp http"], ["sec-websocket-protocol", "iroh-relay-v2"]],
      want: { kind: "derp" },
    },
    {
      name: "0.35 WebSocket: no subprotocol",
      headers: WS,
      want: { kind: "ws", generation: "0.35", wsKey: "dGhlIHNhbXBsZSBub25jZQ==" },
    },
    {
      name: "1.x client offering v2 and v1",
      headers: [...WS, ["sec-websocket-protocol", "iroh-relay-v2, iroh-relay-v1"]],
      want: { kind: "ws", generation: "1.x", version: 2, wsKey: "dGhlIHNhbXBsZSBub25jZQ==" },
    },
    {
      name: "0.91–0.97 client offering only v1",
      headers: [...WS, ["sec-websocket-protocol", "iroh-relay-v1"]],
      want: { kind: "ws", generation: "1.x", version: 1, wsKey: "dGhlIHNhbXBsZSBub25jZQ==" },
    },
    {
      name: "Upgrade token case-insensitive for WebSocket",
      headers: [["upgrade", "WebSocket"], ...WS.slice(1)],
      want: { kind: "ws", generation: "0.35", wsKey: "dGhlIHNhbXBsZSBub25jZQ==" },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assert.deepEqual(classifyUpgrade(head(c.headers)), c.want));
  }
});

Deno.test("classifyUpgrade() picks iroh-relay-v2 whatever the order (test_subprotocol_negotiation_picks_latest)", () => {
  for (
    const offered of [
      "iroh-relay-v2,iroh-relay-v1",
      "iroh-relay-v1,iroh-relay-v2",
      "baz, iroh-relay-v1, iroh-relay-v2, boo",
      "foo, iroh-relay-v2, bar",
    ]
  ) {
    const up = classifyUpgrade(head([...WS, ["sec-websocket-protocol", offered]]));
    assert.equal(up.kind === "ws" && up.generation === "1.x" && up.version, 2, offered);
  }
  const v1 = classifyUpgrade(head([...WS, ["sec-websocket-protocol", "x, iroh-relay-v1"]]));
  assert.equal(v1.kind === "ws" && v1.generation === "1.x" && v1.version, 1);
});

Deno.test("classifyUpgrade() answers 400 naming our versions when only unknown subprotocols are offered", () => {
  assertHttpError(
    () => classifyUpgrade(head([...WS, ["sec-websocket-protocol", "foo, iroh-relay-v3"]])),
    400,
    /we support iroh-relay-v2, iroh-relay-v1 but you only provide foo, iroh-relay-v3$/,
  );
  assertHttpError(() => classifyUpgrade(head([...WS, ["sec-websocket-protocol", ""]])), 400);
});

Deno.test("classifyUpgrade() refuses bad upgrades with 400 (spec §1.2)", async (t) => {
  const cases: { name: string; headers: [string, string][]; versionError?: boolean }[] = [
    { name: "no Upgrade", headers: WS.slice(1) },
    { name: "Upgrade h2c", headers: [["upgrade", "h2c"], ...WS.slice(1)] },
    { name: "derp token with another case", headers: [["upgrade", "Iroh Derp Http"]] },
    { name: "missing Sec-WebSocket-Key", headers: WS.filter(([k]) => k !== "sec-websocket-key") },
    { name: "empty Sec-WebSocket-Key", headers: WS.map(([k, v]) => [k, k === "sec-websocket-key" ? "" : v]) },
    {
      name: "missing Sec-WebSocket-Version",
      headers: WS.filter(([k]) => k !== "sec-websocket-version"),
      versionError: true,
    },
    {
      name: "Sec-WebSocket-Version 8",
      headers: WS.map(([k, v]) => [k, k === "sec-websocket-version" ? "8" : v]),
      versionError: true,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(() => classifyUpgrade(head(c.headers)), (e: unknown) => {
        assert.ok(e instanceof HttpError);
        assert.equal(e.status, 400);
        assert.equal(e instanceof WsVersionError, c.versionError === true);
        return true;
      });
    });
  }
});

Deno.test("presentedToken() takes the Bearer token first, then ?token=", () => {
  const h = (headers: [string, string][], query = "") => ({ ...head(headers), query });
  assert.equal(presentedToken(h([["authorization", "Bearer abc"]])), "abc");
  assert.equal(presentedToken(h([["authorization", "bearer  abc "]])), "abc");
  assert.equal(presentedToken(h([["authorization", "BEARER abc"]], "token=q")), "abc");
  assert.equal(presentedToken(h([["authorization", "Basic eHk="]], "token=q")), "q");
  assert.equal(presentedToken(h([], "a=1&token=t%20t")), "t t");
  assert.equal(presentedToken(h([])), undefined);
});

Deno.test("checkClientAuthHeader() accepts the spec's fast-path header and refuses malformed ones with 400", () => {
  checkClientAuthHeader(head([["x-iroh-relay-client-auth-v1", FAST_PATH_HEADER]]));
  checkClientAuthHeader(head([]));
  for (const bad of ["!!!", FAST_PATH_HEADER.slice(0, -4), FAST_PATH_HEADER + "AAAA", FAST_PATH_HEADER + "=", ""]) {
    assertHttpError(() => checkClientAuthHeader(head([["x-iroh-relay-client-auth-v1", bad]])), 400);
  }
});

Deno.test("serializeResponse() adds Content-Length except on 101 and 204, and Connection: close on request", () => {
  const dec = new TextDecoder();
  assert.equal(
    dec.decode(serializeResponse({ status: 404, headers: [["X-A", "b"]], body: "Not Found" })),
    "HTTP/1.1 404 Not Found\r\nX-A: b\r\nContent-Length: 9\r\n\r\nNot Found",
  );
  assert.equal(
    dec.decode(serializeResponse({ status: 101, headers: [["Upgrade", "iroh derp http"]] }, { close: true })),
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: iroh derp http\r\n\r\n",
  );
  assert.equal(
    dec.decode(serializeResponse({ status: 204, headers: [] }, { close: true })),
    "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
  );
});
