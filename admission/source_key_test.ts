import assert from "node:assert/strict";
import { sourceKey } from "./source_key.ts";

Deno.test("sourceKey() keeps an IPv4 address as its own source", () => {
  assert.equal(sourceKey("192.0.2.1"), "192.0.2.1");
  assert.equal(sourceKey("127.0.0.2"), "127.0.0.2");
});

Deno.test("sourceKey() groups IPv6 addresses by /64", () => {
  assert.equal(sourceKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  assert.equal(sourceKey("2001:db8:1:2::1"), "2001:db8:1:2::/64");
  assert.equal(sourceKey("2001:DB8:1:2::ffff"), "2001:db8:1:2::/64");
  assert.equal(sourceKey("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(sourceKey("::1"), "0:0:0:0::/64");
  assert.equal(sourceKey("[2001:db8:1:3::5]"), "2001:db8:1:3::/64");
  assert.equal(sourceKey("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.notEqual(sourceKey("2001:db8:1:2::1"), sourceKey("2001:db8:1:3::1"));
});

Deno.test("sourceKey() maps IPv4-mapped IPv6 to the IPv4 address", () => {
  assert.equal(sourceKey("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(sourceKey("::ffff:c000:207"), "192.0.2.7");
  assert.equal(sourceKey("::FFFF:127.0.0.1"), "127.0.0.1");
});

Deno.test("sourceKey() passes anything unparseable through", () => {
  assert.equal(sourceKey("not-an-ip:::"), "not-an-ip:::");
  assert.equal(sourceKey("1:2:3:4:5:6:7:8:9"), "1:2:3:4:5:6:7:8:9");
  assert.equal(sourceKey(""), "");
});
