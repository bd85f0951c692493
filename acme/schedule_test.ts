import assert from "node:assert/strict";
import { describeAcmeError, formatDuration, renewalTime, retryDelay, unusableReason } from "./schedule.ts";

const DAY = 86_400_000;
const cert = (from: number, days: number, domains = ["relay.example.org"]) => ({
  notBefore: new Date(from),
  notAfter: new Date(from + days * DAY),
  domains,
});

Deno.test("renewalTime() is at 2/3 of the lifetime: day 60 of a 90-day certificate", () => {
  assert.equal(renewalTime(cert(0, 90)), 60 * DAY);
  assert.equal(renewalTime(cert(1_000, 6)), 1_000 + 4 * DAY);
});

Deno.test("unusableReason() wants every configured name and an unexpired certificate", () => {
  const c = cert(0, 90, ["relay.example.org", "www.example.org"]);
  assert.equal(unusableReason(c, ["Relay.Example.org"], DAY), undefined);
  assert.match(unusableReason(c, ["relay.example.org", "new.example.org"], DAY)!, /does not name new\.example\.org/);
  assert.match(unusableReason(c, ["relay.example.org"], 90 * DAY)!, /expired/);
});

Deno.test("retryDelay() doubles from the first delay up to the cap, with ±10 % jitter", () => {
  const b = { initialMs: 60_000, maxMs: 6 * 3_600_000 };
  assert.deepEqual([1, 2, 3, 4].map((n) => retryDelay(n, b, 0.5)), [60_000, 120_000, 240_000, 480_000]);
  assert.equal(retryDelay(50, b, 0.5), b.maxMs);
  assert.equal(retryDelay(1, b, 0), 54_000);
  assert.equal(retryDelay(1, b, 0.999999), 66_000);
});

Deno.test("formatDuration() reads like an operator writes it", () => {
  assert.deepEqual([300, 62_000, 3_600_000, 6 * 3_600_000, 60 * DAY].map(formatDuration), [
    "0.3s",
    "62s",
    "60m",
    "6h",
    "60d",
  ]);
});

Deno.test("describeAcmeError() names the cause: CA unreachable, untrusted, rate limit, validation", () => {
  const ctx = { directoryUrl: "https://acme.test/dir", hostnames: ["relay.example.org"] };
  const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:14000"), { code: "ECONNREFUSED" });
  assert.match(
    describeAcmeError(refused, ctx),
    /^cannot reach the ACME server https:\/\/acme\.test\/dir \(ECONNREFUSED\)/,
  );
  assert.match(describeAcmeError(new Error("unable to verify the first certificate"), ctx), /not trusted/);
  assert.match(
    describeAcmeError(new Error("Error creating new order :: too many certificates already issued"), ctx),
    /^rate limited by the ACME server/,
  );
  const validation = new Error(
    "127.0.0.1: Fetching http://relay.example.org/.well-known/acme-challenge/x: Connection refused",
  );
  assert.match(describeAcmeError(validation, ctx), /^validation of relay\.example\.org failed/, "not a CA outage");
  assert.match(describeAcmeError("boom", ctx), /^ACME request failed: boom/);
});
