import assert from "node:assert/strict";
import {
  captivePortalEndpoint,
  detailedHealth,
  generate204,
  notFound,
  relayEndpoint,
  SECURITY_HEADERS,
} from "./endpoints.ts";
import type { HttpResponse, RequestHead } from "./http1.ts";

const HEALTH = { version: "1.2.3", gitHash: "abc" };

function get(path: string, headers: [string, string][] = [], method = "GET"): RequestHead {
  return { method, path, query: "", version: "HTTP/1.1", headers };
}

function headerOf(res: HttpResponse, name: string): string | undefined {
  return res.headers.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
}

Deno.test("relayEndpoint() serves the root page on / and /index.html (test_root_handler)", () => {
  for (const path of ["/", "/index.html"]) {
    const res = relayEndpoint(get(path), HEALTH);
    assert.equal(res.status, 200);
    assert.equal(headerOf(res, "content-type"), "text/html; charset=utf-8");
    assert.match(String(res.body), /iroh\.computer/);
    assert.equal(
      res.body,
      '<html><body>\n<h1>Iroh Relay</h1>\n<p>\n  This is an <a href="https://iroh.computer/">Iroh</a> Relay server.\n</p>\n',
    );
  }
});

Deno.test("relayEndpoint() serves /robots.txt, /ping and /healthz", () => {
  const robots = relayEndpoint(get("/robots.txt"), HEALTH);
  assert.equal(robots.status, 200);
  assert.equal(robots.body, "User-agent: *\nDisallow: /\n");
  assert.equal(headerOf(robots, "content-type"), undefined);
  const ping = relayEndpoint(get("/ping"), HEALTH);
  assert.equal(ping.status, 200);
  assert.equal(headerOf(ping, "access-control-allow-origin"), "*");
  assert.equal(ping.body ?? "", "");
  const health = relayEndpoint(get("/healthz"), HEALTH);
  assert.equal(health.status, 200);
  assert.equal(headerOf(health, "content-type"), "application/json");
  assert.deepEqual(JSON.parse(String(health.body)), { status: "ok", version: "1.2.3" });
});

Deno.test("relayEndpoint() /healthz shows no service details; detailedHealth() (metrics port) does", () => {
  const info = {
    version: "1.2.3",
    gitHash: "abc",
    services: () => ({ imap: { mode: "standalone", login: "any", plain: "[::]:143", sessions: 3 } }),
  };
  const pub = relayEndpoint(get("/healthz"), info);
  assert.deepEqual(JSON.parse(String(pub.body)), { status: "ok", version: "1.2.3" });
  assert.doesNotMatch(String(pub.body), /standalone|143|sessions|abc/);
  const sick = relayEndpoint(get("/healthz"), { ...info, healthy: () => false });
  assert.equal(sick.status, 503);
  assert.deepEqual(JSON.parse(String(sick.body)), { status: "unhealthy", version: "1.2.3" });
  const detail = detailedHealth(info, { relay: { clients: 2 } });
  assert.equal(detail.status, 200);
  assert.deepEqual(JSON.parse(String(detail.body)), {
    status: "ok",
    version: "1.2.3",
    git_hash: "abc",
    relay: { clients: 2 },
    imap: { mode: "standalone", login: "any", plain: "[::]:143", sessions: 3 },
  });
});

Deno.test("relayEndpoint() answers HEAD like GET (the transport leaves the body out)", () => {
  for (const path of ["/", "/index.html", "/robots.txt", "/ping", "/healthz", "/generate_204"]) {
    assert.deepEqual(relayEndpoint(get(path, [], "HEAD"), HEALTH), relayEndpoint(get(path), HEALTH), path);
  }
  assert.equal(relayEndpoint(get("/nope", [], "HEAD"), HEALTH).status, 404);
});

Deno.test("relayEndpoint() answers 404 'Not Found' to unknown paths and to other methods", () => {
  for (const head of [get("/nope"), get("/ping/"), get("/PING"), get("/ping", [], "POST"), get("/", [], "PUT")]) {
    const res = relayEndpoint(head, HEALTH);
    assert.equal(res.status, 404, `${head.method} ${head.path}`);
    assert.equal(res.body, "Not Found");
  }
  assert.deepEqual(notFound().body, "Not Found");
});

Deno.test("relayEndpoint() puts HSTS and CSP on every response", () => {
  for (const path of ["/", "/ping", "/generate_204", "/healthz", "/robots.txt", "/missing"]) {
    const res = relayEndpoint(get(path), HEALTH);
    assert.equal(headerOf(res, "strict-transport-security"), "max-age=63072000; includeSubDomains", path);
    assert.equal(
      headerOf(res, "content-security-policy"),
      "default-src 'none'; frame-ancestors 'none'; form-action 'none'; base-uri 'self'; block-all-mixed-content; plugin-types 'none'",
      path,
    );
  }
  assert.equal(SECURITY_HEADERS.length, 2);
});

Deno.test("generate204() echoes valid X-Iroh-Challenge and X-Tailscale-Challenge values (test_captive_portal_service)", () => {
  const res = generate204(get("/generate_204", [["x-iroh-challenge", "ts_relay.example.org"], [
    "x-tailscale-challenge",
    "abc-123_.Z",
  ]]));
  assert.equal(res.status, 204);
  assert.equal(res.body, undefined);
  assert.equal(headerOf(res, "x-iroh-response"), "response ts_relay.example.org");
  assert.equal(headerOf(res, "x-tailscale-response"), "response abc-123_.Z");
});

Deno.test("generate204() does not echo invalid challenge values", async (t) => {
  for (const bad of ["", "a b", "a/b", "<script>", "ä", "x".repeat(64), "a\tb", "a:b"]) {
    await t.step(JSON.stringify(bad), () => {
      const res = generate204(get("/generate_204", [["x-iroh-challenge", bad], ["x-tailscale-challenge", bad]]));
      assert.equal(res.status, 204);
      assert.equal(headerOf(res, "x-iroh-response"), undefined);
      assert.equal(headerOf(res, "x-tailscale-response"), undefined);
    });
  }
  const longest = generate204(get("/generate_204", [["x-iroh-challenge", "x".repeat(63)]]));
  assert.equal(headerOf(longest, "x-iroh-response"), "response " + "x".repeat(63));
});

Deno.test("captivePortalEndpoint() serves only GET (and HEAD) /generate_204, without the security headers", () => {
  assert.equal(captivePortalEndpoint(get("/generate_204", [], "HEAD")).status, 204);
  const ok = captivePortalEndpoint(get("/generate_204", [["x-iroh-challenge", "c"]]));
  assert.equal(ok.status, 204);
  assert.equal(headerOf(ok, "x-iroh-response"), "response c");
  assert.equal(headerOf(ok, "strict-transport-security"), undefined);
  for (const head of [get("/"), get("/ping"), get("/relay"), get("/healthz"), get("/generate_204", [], "POST")]) {
    const res = captivePortalEndpoint(head);
    assert.equal(res.status, 404);
    assert.equal(res.body, "Not Found");
    assert.equal(headerOf(res, "strict-transport-security"), undefined);
  }
});
