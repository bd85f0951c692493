import assert from "node:assert/strict";
import { authenticate, parseXMatrix, signedBytes } from "./x_matrix.ts";
import { parseJson } from "./canonical_json.ts";
import { isP2PServerName, isServerName, p2pKeyOf, parseUserId } from "./identifiers.ts";
import { MatrixPeer, specCanonicalJson } from "../../tests/support/matrix_peer.ts";

async function webVerify(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey("raw", pk as BufferSource, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, sig as BufferSource, msg as BufferSource);
  } catch {
    return false;
  }
}

const RELAY = "relay.example";
const opts = { serverNames: [RELAY], verify: webVerify };
const URI = "/_matrix/federation/v1/relay_txn/@user:x";

Deno.test("parseXMatrix() reads gomatrixserverlib's header, quoted or bare, and ignores other schemes", () => {
  assert.deepEqual(parseXMatrix('X-Matrix origin="a.b",key="ed25519:k",sig="c2ln",destination="d"'), {
    origin: "a.b",
    key: "ed25519:k",
    sig: "c2ln",
    destination: "d",
  });
  assert.deepEqual(parseXMatrix("X-Matrix origin=a.b, key=ed25519:k, sig=c2ln"), {
    origin: "a.b",
    key: "ed25519:k",
    sig: "c2ln",
  });
  assert.equal(parseXMatrix("Bearer abc"), null);
  assert.equal(parseXMatrix('X-Matrix origin="a",key="ed25519:k"'), "invalid");
  assert.equal(parseXMatrix("X-Matrix"), "invalid");
});

Deno.test("signedBytes() is the canonical JSON the spec and the test peer sign", () => {
  const content = parseJson('{"entry_id":3}');
  assert.equal(
    new TextDecoder().decode(signedBytes({ method: "GET", uri: URI, content }, "o", "d")),
    specCanonicalJson({ content: { entry_id: 3 }, destination: "d", method: "GET", origin: "o", uri: URI }),
  );
  assert.equal(
    new TextDecoder().decode(signedBytes({ method: "GET", uri: URI }, "o", "d")),
    '{"destination":"d","method":"GET","origin":"o","uri":"' + URI + '"}',
  );
});

Deno.test("authenticate() accepts a peer's signature and refuses each kind of bad one with Dendrite's status", async () => {
  const peer = MatrixPeer.generate();
  const body = { entry_id: 0 };
  const content = parseJson(JSON.stringify(body));
  const good = peer.authorization("GET", URI, RELAY, body);
  assert.deepEqual(await authenticate([good], { method: "GET", uri: URI, content }, opts), {
    ok: true,
    origin: peer.serverName,
  });
  const refuse = async (
    headers: string[],
    status: number,
    message: RegExp,
    req = { method: "GET", uri: URI, content },
  ) => {
    const r = await authenticate(headers, req, opts);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.status, status);
      assert.match(r.message, message);
    }
  };
  await refuse([], 401, /Missing "Authorization: X-Matrix/);
  await refuse(["Bearer x"], 401, /Missing/);
  await refuse(['X-Matrix origin="a",key="ed25519:k"'], 400, /Bad Request/);
  await refuse([good.replace(RELAY, "other.example")], 400, /Unrecognised server name "other.example"/);
  // Tampered method, uri, body: the signature no longer matches.
  await refuse([good], 401, /Invalid request signature/, { method: "PUT", uri: URI, content });
  await refuse([good], 401, /Invalid request signature/, { method: "GET", uri: URI + "?entry_id=1", content });
  await refuse([good], 401, /Invalid request signature/, {
    method: "GET",
    uri: URI,
    content: parseJson('{"entry_id":1}'),
  });
  await refuse([good.replace(/sig="[^"]+"/, 'sig="@@@"')], 401, /Invalid request signature/);
  // Another key signing with this peer's name: verification uses the key the name spells.
  const other = MatrixPeer.generate();
  await refuse(
    [other.authorization("GET", URI, RELAY, body).replaceAll(other.serverName, peer.serverName)],
    401,
    /Invalid/,
  );
  // Origins that are not P2P names cannot be verified without a key server.
  await refuse([good.replace(peer.serverName, "matrix.org")], 401, /not a P2P server name/);
  await refuse([good.replace(peer.serverName, "bad name!")], 400, /Invalid server name for Origin/);
  // Two headers from different origins.
  await refuse([good, other.authorization("GET", URI, RELAY, body)], 400, /Bad Request/);
  // Only a non-ed25519 key id: nothing we can check.
  await refuse([good.replace("ed25519:", "curve9:")], 401, /no ed25519 signature/);
  // A second, bad ed25519 signature spoils a good one.
  await refuse([good, good.replace(/sig="[^"]+"/, `sig="${"A".repeat(86)}"`)], 401, /Invalid request signature/);
});

Deno.test("authenticate() without destination in the header tries each of our names", async () => {
  const peer = MatrixPeer.generate();
  const header = peer.authorization("GET", URI, "second.example").replace(/,destination="[^"]*"/, "");
  const r = await authenticate([header], { method: "GET", uri: URI }, {
    ...opts,
    serverNames: [RELAY, "second.example"],
  });
  assert.equal(r.ok, true);
  const none = await authenticate([header], { method: "GET", uri: URI }, { ...opts, serverNames: [] });
  assert.equal(none.ok, false);
});

Deno.test("identifiers: server names, user ids (Dendrite's non-strict parse), P2P names", () => {
  for (
    const ok of ["matrix.org", "matrix.org:8888", "1.2.3.4", "1.2.3.4:1234", "[1234:5678::abcd]", "[::1]:5678", "local"]
  ) {
    assert.ok(isServerName(ok), ok);
  }
  for (const bad of ["", "a b", "a:", "a:123456", "[::1", "1.2.3.400", "x".repeat(256)]) {
    assert.ok(!isServerName(bad), bad);
  }
  assert.deepEqual(parseUserId("@user:local"), { localpart: "user", domain: "local" });
  assert.deepEqual(parseUserId("@u:[::1]:8448"), { localpart: "u", domain: "[::1]:8448" });
  assert.equal(parseUserId("user:local"), null, "Dendrite's TestCreateRelayPublicRoutes: no sigil is invalid");
  assert.equal(parseUserId("@:local"), null);
  assert.equal(parseUserId("@user"), null);
  assert.equal(parseUserId("@us er:local"), null);
  const hex = "ab".repeat(32);
  assert.ok(isP2PServerName(hex));
  assert.ok(!isP2PServerName(hex.toUpperCase()));
  assert.ok(!isP2PServerName(hex.slice(2)));
  assert.equal(p2pKeyOf(hex)![0], 0xab);
  assert.equal(p2pKeyOf("matrix.org"), null);
});
