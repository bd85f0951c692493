/**
 * Forged identities over real sockets: every way of claiming a key without
 * holding its secret (or with a weak key or a malleated signature) is
 * refused, and packets addressed to the victim's key reach only the victim.
 *
 * Expected refusals (spec §3): 0.35 closes without a reply on a bad
 * ClientInfo signature; 1.x answers ServerDeniesAuth("signature invalid")
 * and closes, or closes without a reply when the key does not decode.
 */

import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import { clientAuth, clientInfo, type ClientKind, type TestRelayClient } from "./support/relay_client.ts";
import { exchange, is035, KINDS, withRelay, withTimeout } from "./support/relay_scope.ts";
import { concatBytes, hex } from "./support/bytes.ts";
import { challengeMessage } from "../relay/proto/handshake.ts";

const L = ed25519.Point.Fn.ORDER;
/** The identity point: a small-order key for which R = identity, S = 0 "verifies" any message. */
const IDENTITY = hex("0100000000000000000000000000000000000000000000000000000000000000");
const TRIVIAL_SIG = concatBytes(IDENTITY, new Uint8Array(32));

/** Adds L to the S half of a signature: same verification equation, non-canonical encoding. */
function malleate(sig: Uint8Array): Uint8Array {
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]!);
  s += L;
  const out = sig.slice();
  for (let i = 32; i < 64; i++) {
    out[i] = Number(s & 0xffn);
    s >>= 8n;
  }
  return out;
}

/** What an attack needs: the attacker's connection, and the victim's secret only to replay what the victim sent. */
interface AttackCtx {
  attacker: TestRelayClient;
  victimKey: Uint8Array;
  /** Something the victim really sent: its ClientInfo (0.35) or its ClientAuth over its own challenge (1.x). */
  victimAuth: { publicKey: Uint8Array; signature: Uint8Array; message?: Uint8Array };
}

interface Attack {
  name: string;
  kinds: "0.35" | "1.x";
  /** Sends the forged first frame. */
  run(ctx: AttackCtx): Promise<void>;
}

async function challengeOf(c: TestRelayClient): Promise<Uint8Array> {
  const m = await c.next(3000, []);
  assert.equal(m.type, "ServerChallenge");
  return (m as { challenge: Uint8Array }).challenge;
}

const ATTACKS: Attack[] = [
  {
    name: "a ClientInfo for the victim's key signed by another key",
    kinds: "0.35",
    run: async ({ attacker, victimKey }) => {
      const message = Uint8Array.of(3);
      await attacker.sendMsg({
        type: "ClientInfo",
        key: victimKey,
        signature: ed25519.sign(message, attacker.secretKey),
        message,
      });
    },
  },
  {
    name: "the victim's ClientInfo with a non-canonical (S + L) signature",
    kinds: "0.35",
    run: async ({ attacker, victimAuth }) => {
      await attacker.sendMsg({
        type: "ClientInfo",
        key: victimAuth.publicKey,
        signature: malleate(victimAuth.signature),
        message: victimAuth.message!,
      });
    },
  },
  {
    name: "the victim's ClientInfo signature over another message",
    kinds: "0.35",
    run: async ({ attacker, victimAuth }) => {
      await attacker.sendMsg({
        type: "ClientInfo",
        key: victimAuth.publicKey,
        signature: victimAuth.signature,
        message: Uint8Array.of(4),
      });
    },
  },
  {
    name: "a ClientInfo for a small-order key with a trivial signature",
    kinds: "0.35",
    run: async ({ attacker }) => {
      await attacker.sendMsg({ type: "ClientInfo", key: IDENTITY, signature: TRIVIAL_SIG, message: Uint8Array.of(3) });
    },
  },
  {
    name: "a ClientAuth for the victim's key signed by another key",
    kinds: "1.x",
    run: async ({ attacker, victimKey }) => {
      const challenge = await challengeOf(attacker);
      const sig = ed25519.sign(challengeMessage(challenge), attacker.secretKey);
      await attacker.sendMsg({ type: "ClientAuth", publicKey: victimKey, signature: sig });
    },
  },
  {
    name: "the victim's ClientAuth replayed over another challenge",
    kinds: "1.x",
    run: async ({ attacker, victimAuth }) => {
      await challengeOf(attacker);
      await attacker.sendMsg({ type: "ClientAuth", publicKey: victimAuth.publicKey, signature: victimAuth.signature });
    },
  },
  {
    name: "a ClientAuth with a non-canonical (S + L) signature",
    kinds: "1.x",
    run: async ({ attacker }) => {
      const challenge = await challengeOf(attacker);
      const auth = clientAuth(attacker.secretKey, challenge) as { publicKey: Uint8Array; signature: Uint8Array };
      await attacker.sendMsg({ type: "ClientAuth", publicKey: auth.publicKey, signature: malleate(auth.signature) });
    },
  },
  {
    name: "a ClientAuth for a small-order key with a trivial signature",
    kinds: "1.x",
    run: async ({ attacker }) => {
      await challengeOf(attacker);
      await attacker.sendMsg({ type: "ClientAuth", publicKey: IDENTITY, signature: TRIVIAL_SIG });
    },
  },
];

/** Connects the victim by hand, keeping what it sent so attacks can replay it. */
async function connectVictim(
  connect: (kind: ClientKind, o: object) => Promise<TestRelayClient>,
  kind: ClientKind,
  secretKey: Uint8Array,
): Promise<{ victim: TestRelayClient; victimAuth: AttackCtx["victimAuth"] }> {
  const victim = await connect(kind, { secretKey, noHandshake: true });
  let victimAuth: AttackCtx["victimAuth"];
  if (is035(kind)) {
    const info = clientInfo(secretKey) as { key: Uint8Array; signature: Uint8Array; message: Uint8Array };
    await victim.sendMsg(info as never);
    victimAuth = { publicKey: info.key, signature: info.signature, message: info.message };
  } else {
    const auth = clientAuth(secretKey, await challengeOf(victim)) as { publicKey: Uint8Array; signature: Uint8Array };
    await victim.sendMsg(auth as never);
    assert.equal((await victim.next(3000, [])).type, "ServerConfirmsAuth");
    victimAuth = auth;
  }
  await victim.ping(3000);
  return { victim, victimAuth };
}

for (const kind of KINDS) {
  for (const attack of ATTACKS.filter((a) => a.kinds === (is035(kind) ? "0.35" : "1.x"))) {
    Deno.test(`forged identity (${kind}): ${attack.name} is refused; the victim alone gets its packets`, () =>
      withRelay({}, async (s) => {
        const victimSecret = ed25519.utils.randomSecretKey();
        const { victim, victimAuth } = await connectVictim((k, o) => s.connect(k, o), kind, victimSecret);
        const sender = await s.connect(kind);
        const attacker = await s.connect(kind, { noHandshake: true });

        await attack.run({ attacker, victimKey: victim.publicKey, victimAuth });
        await withTimeout(attacker.ended, 3000, "the attacker's connection is closed");

        const replies = attacker.pending.map((m) => m.type).filter((t) => t !== "ServerChallenge");
        if (is035(kind)) {
          assert.deepEqual(replies, [], "0.35: closed without a reply");
        } else {
          const allowed = [[], ["ServerDeniesAuth"]];
          assert.ok(allowed.some((a) => JSON.stringify(a) === JSON.stringify(replies)), `replies: ${replies}`);
          const denial = attacker.pending.find((m) => m.type === "ServerDeniesAuth");
          if (denial) assert.deepEqual(denial, { type: "ServerDeniesAuth", reason: "signature invalid" });
        }

        // The victim is still the one receiving packets for its key, and still connected.
        await exchange(sender, victim, "to the victim");
        await exchange(victim, sender, "from the victim");
        assert.equal(victim.closed, false);
        assert.equal(s.relay.core.connectedKeys, 2, "only the victim and the sender are registered");
        assert.ok(s.relay.core.metrics.c.authFailures >= 1);
        assert.equal(s.relay.core.metrics.c.accepts, 2);
      }));
  }
}

for (const kind of ["v1", "v2"] as const) {
  Deno.test(`forged identity (${kind}): a captured fast-path header does not authenticate over plain HTTP`, () =>
    withRelay({}, async (s) => {
      const victimSecret = ed25519.utils.randomSecretKey();
      const victim = await s.connect(kind, { secretKey: victimSecret });
      // A well-formed header signed by the victim over some key material: without a TLS exporter the
      // relay cannot check it, so it must fall back to the challenge, which the attacker cannot answer.
      const km = new Uint8Array(32).fill(9);
      const raw = concatBytes(
        victim.publicKey,
        Uint8Array.of(0x40),
        ed25519.sign(km.subarray(0, 16), victimSecret),
        km.subarray(16),
      );
      const header = raw.toBase64({ alphabet: "base64url", omitPadding: true });
      const attacker = await s.connect(kind, { noHandshake: true, headers: { "x-iroh-relay-client-auth-v1": header } });
      const challenge = await challengeOf(attacker);
      const sig = ed25519.sign(challengeMessage(challenge), attacker.secretKey);
      await attacker.sendMsg({ type: "ClientAuth", publicKey: victim.publicKey, signature: sig });
      assert.deepEqual(await attacker.next(3000, []), { type: "ServerDeniesAuth", reason: "signature invalid" });
      await withTimeout(attacker.ended, 3000, "closed");
      const sender = await s.connect(kind);
      await exchange(sender, victim);
    }));
}
