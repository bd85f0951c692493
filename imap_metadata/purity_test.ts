import assert from "node:assert/strict";

/** Protocol files that must stay free of I/O, timers and `Deno.*` (STYLE: pure protocol vs transport). */
const PURE = [
  "parser.ts",
  "tokenizer.ts",
  "encoder.ts",
  "session.ts",
  "session_mailbox.ts",
  "metadata.ts",
  "capability.ts",
  "proxy_session.ts",
  "proxy_answer.ts",
  "proxy_queue.ts",
  "metrics.ts",
  "password.ts",
  "input_buffer.ts",
  "list_pattern.ts",
  "login_guard.ts",
];

Deno.test("pure imap_metadata files mention no Deno API, timer or socket module", async () => {
  for (const f of PURE) {
    const src = await Deno.readTextFile(new URL(f, import.meta.url));
    // Strip comments so prose may say "Deno" when explaining why.
    const code = src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:])\/\/.*$/gm, "$1");
    assert.doesNotMatch(code, /\bDeno\./, `${f} uses Deno.*`);
    assert.doesNotMatch(code, /\b(setTimeout|setInterval|performance\.now|Date\.now)\b/, `${f} uses a timer or clock`);
    assert.doesNotMatch(code, /from "node:(net|tls|fs|dns)"/, `${f} imports a socket or file module`);
  }
});
