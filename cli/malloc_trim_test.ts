import assert from "node:assert/strict";
import { createLogger } from "../log/mod.ts";
import { startMallocTrim } from "./malloc_trim.ts";

const quiet = () => {
  const lines: string[] = [];
  return { lines, log: createLogger({ level: "debug", format: "text", write: (l: string) => lines.push(l) }) };
};

Deno.test("startMallocTrim() trims through glibc when FFI is granted, and its timer keeps nobody alive", () => {
  const { log } = quiet();
  const t = startMallocTrim(log, 60_000);
  try {
    assert.equal(t.active, Deno.build.os === "linux");
    if (!t.active) return;
    t.trimNow();
    t.trimNow();
    assert.equal(t.trims, 2);
  } finally {
    t.stop();
  }
});

Deno.test("startMallocTrim() without --allow-ffi is off and says why at debug", async () => {
  await Deno.permissions.revoke({ name: "ffi" });
  const { lines, log } = quiet();
  const t = startMallocTrim(log);
  assert.equal(t.active, false);
  t.trimNow();
  assert.equal(t.trims, 0);
  t.stop();
  assert.ok(lines.some((l) => /memory trim off: (no --allow-ffi|not Linux)/.test(l)), lines.join("\n"));
});
