/** closestKey() behind "did you mean": near misses only, case and dashes forgiven. */

import assert from "node:assert/strict";
import { closestKey, editDistance } from "./suggest.ts";

Deno.test("editDistance() counts a swapped pair once", () => {
  assert.equal(editDistance("bind_addr", "bind_adrd"), 1);
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(editDistance("kitten", "sitting"), 3);
});

Deno.test("closestKey() suggests only near misses", () => {
  const known = ["http_bind_addr", "https_bind_addr", "enable_relay", "tls"];
  assert.equal(closestKey("http_bind_adr", known), "http_bind_addr");
  assert.equal(closestKey("htps_bind_addr", known), "https_bind_addr");
  assert.equal(closestKey("Enable-Relay", known), "enable_relay");
  assert.equal(closestKey("tsl", known), "tls");
  assert.equal(closestKey("frobnicate", known), undefined);
  assert.equal(closestKey("x", known), undefined);
});
