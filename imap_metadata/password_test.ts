import assert from "node:assert/strict";
import { PASSWORD_HASH } from "../config/mod.ts";
import { DEFAULT_ITERATIONS, hashPassword, MIN_ITERATIONS, verifyPassword } from "./password.ts";

/** Computed independently with Python: hashlib.pbkdf2_hmac("sha256", b"correct horse", bytes(range(16)), 100000). */
const PYTHON_VECTOR = "pbkdf2-sha256$100000$AAECAwQFBgcICQoLDA0ODw==$V/LC8HOXSNUWQZsGKohGZjI8WD6krhZVBKgfe1PGKgk=";

Deno.test("hashPassword() matches a PBKDF2 vector computed with Python", async () => {
  assert.equal(
    await hashPassword("correct horse", { iterations: 100_000, salt: Uint8Array.from({ length: 16 }, (_, i) => i) }),
    PYTHON_VECTOR,
  );
});

Deno.test("hashPassword() output is accepted by the config schema and uses the default iterations", async () => {
  const h = await hashPassword("secret");
  assert.match(h, PASSWORD_HASH);
  assert.equal(Number(h.split("$")[1]), DEFAULT_ITERATIONS);
  assert.ok(DEFAULT_ITERATIONS >= 100_000);
  assert.notEqual(h, await hashPassword("secret"), "random salt");
});

Deno.test("verifyPassword() accepts the right password and rejects others", async () => {
  assert.equal(await verifyPassword("correct horse", PYTHON_VECTOR), true);
  assert.equal(await verifyPassword("correct horse ", PYTHON_VECTOR), false);
  assert.equal(await verifyPassword("", PYTHON_VECTOR), false);
});

Deno.test("verifyPassword() returns false for hashes it cannot read", async () => {
  for (
    const bad of [
      "",
      "plain",
      "pbkdf2-sha256$0$AAAA$AAAA",
      "pbkdf2-sha256$99999999999$AAAA$AAAA",
      "pbkdf2-sha1$1000$AAAA$AAAA",
      "pbkdf2-sha256$1000$!!$AAAA",
    ]
  ) {
    assert.equal(await verifyPassword("x", bad), false, bad);
  }
});

Deno.test("hashPassword() refuses fewer iterations than the floor", async () => {
  await assert.rejects(hashPassword("x", { iterations: MIN_ITERATIONS - 1 }), RangeError);
});
