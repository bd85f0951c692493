import assert from "node:assert/strict";

/** Decision files that must stay free of I/O, timers and `Deno.*` (STYLE: pure logic vs transport). */
const PURE = ["gate.ts", "source_key.ts", "metrics.ts"];

Deno.test("pure admission files mention no Deno API, timer or socket module", async () => {
  for (const f of PURE) {
    const src = await Deno.readTextFile(new URL(f, import.meta.url));
    const code = src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:])\/\/.*$/gm, "$1");
    assert.doesNotMatch(code, /\bDeno\./, `${f} uses Deno.*`);
    assert.doesNotMatch(code, /\b(setTimeout|setInterval|performance\.now|Date\.now)\b/, `${f} uses a timer or clock`);
    assert.doesNotMatch(code, /from "node:(net|tls|fs|dns)"/, `${f} imports a socket or file module`);
  }
});
