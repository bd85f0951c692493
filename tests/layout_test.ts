/**
 * @module
 * The layout rules of STYLE.md, checked on every source file:
 * - a folder imports another top-level folder only through its `mod.ts`
 *   (tests/ may reach inside, for white-box tests);
 * - `config/` imports no service (only the shared `redis/` and `log/`);
 * - `relay/` never imports `mesh/` (the core defines the interface, the
 *   caller builds the backend);
 * - every file in a `proto/` folder is pure: no `Deno.*`, no timers, no
 *   sockets or files; a few files outside `proto/` folders are held to the
 *   `Deno.*` rule as well (they take sockets and clocks injected).
 * Each failure names the file and the offending import or use.
 */

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/** Folders that may be imported by everyone (shared libraries), and who config/ may import. */
const CONFIG_MAY_IMPORT = new Set(["redis", "log"]);

/** Files outside `proto/` folders that take sockets, clocks and files injected. */
const DENO_FREE = [
  "relay/server/client.ts",
  "relay/server/client_forward.ts",
  "relay/server/client_handshake.ts",
  "relay/server/client_writer.ts",
  "relay/server/clients.ts",
  "relay/server/rate_limit.ts",
  "relay/server/access.ts",
  "relay/server/access_control.ts",
  "relay/server/metrics.ts",
  "relay/server/mesh.ts",
  "relay/transport/endpoints.ts",
  "relay/transport/http1.ts",
  "mesh/codec.ts",
  "redis/resp.ts",
  "config/schema.ts",
  "config/reader.ts",
  "config/relay.ts",
  "config/access.ts",
  "config/tls.ts",
  "config/imap.ts",
  "config/mesh.ts",
  "config/mailbox.ts",
  "config/discovery.ts",
  "config/key_text.ts",
  "stun/codec.ts",
  "stun/rate_limit.ts",
  "stun/metrics.ts",
  "acme/schedule.ts",
  "acme/http01.ts",
  "discovery/rate_limit.ts",
  "discovery/metrics.ts",
  "discovery/http_util.ts",
];

/** Source without comments, so prose may still name `Deno.serve`. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

/** Relative import specifiers of a file (static and dynamic). */
function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of code(text).matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) out.push(m[1]!);
  return out;
}

/** Joins and normalises a repo-relative path. */
function resolve(fromFile: string, spec: string): string {
  const parts = fromFile.split("/").slice(0, -1);
  for (const seg of spec.split("/")) {
    if (seg === "..") parts.pop();
    else if (seg !== ".") parts.push(seg);
  }
  return parts.join("/");
}

/**
 * The layout violations of one file, as messages naming the import.
 * @param file repo-relative path
 * @param text its source
 */
export function violations(file: string, text: string): string[] {
  const found: string[] = [];
  const top = file.includes("/") ? file.split("/")[0]! : "";
  const inTests = top === "tests";
  for (const spec of importsOf(text)) {
    const target = resolve(file, spec);
    const targetTop = target.includes("/") ? target.split("/")[0]! : "";
    // tests/support holds test clients and fakes, shared by tests beside the code and the benchmarks.
    if (targetTop === "" || targetTop === top || targetTop === "node_modules" || targetTop === "tests") continue;
    if (!inTests && target !== `${targetTop}/mod.ts`) {
      found.push(`${file} imports "${spec}": other folders only through ${targetTop}/mod.ts`);
    }
    if (top === "config" && !CONFIG_MAY_IMPORT.has(targetTop)) {
      found.push(`${file} imports "${spec}": config/ imports no service`);
    }
    if (top === "relay" && targetTop === "mesh") {
      found.push(`${file} imports "${spec}": relay/ never imports mesh/ (the caller builds the backend)`);
    }
  }
  const body = code(text);
  const pureProto = /(^|\/)proto\//.test(file) && !file.endsWith("_test.ts");
  if (pureProto || DENO_FREE.includes(file)) {
    const m = body.match(/\bDeno\.\w+/);
    if (m) found.push(`${file} uses ${m[0]}: pure files take sockets, clocks and files injected`);
  }
  if (pureProto) {
    const t = body.match(
      /\b(setTimeout|setInterval|queueMicrotask)\b|["']node:(net|dgram|tls|fs|http|https|child_process)["']/,
    );
    if (t) found.push(`${file} uses ${t[0]}: proto/ files have no timers, sockets or files`);
  }
  return found;
}

async function sourceFiles(): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string): Promise<void> {
    for await (const e of Deno.readDir(new URL(dir, ROOT))) {
      if (e.name.startsWith(".") || e.name === "node_modules" || e.name === "dist") continue;
      const path = dir === "" ? e.name : `${dir}${e.name}`;
      if (e.isDirectory) await walk(`${path}/`);
      else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
    }
  }
  await walk("");
  return out;
}

Deno.test("layout: folders import each other through mod.ts, config/ imports no service, proto/ is pure", async () => {
  const files = await sourceFiles();
  assert.ok(files.length > 50, "found the source files");
  assert.ok(files.some((f) => f.startsWith("relay/proto/")), "relay/proto/ exists");
  const problems: string[] = [];
  for (const f of files) problems.push(...violations(f, await Deno.readTextFile(new URL(f, ROOT))));
  assert.deepEqual(problems, []);
  for (const f of DENO_FREE) await Deno.stat(new URL(f, ROOT)); // a renamed file must be renamed here too
});

Deno.test("layout: violations() names each kind of offending import", () => {
  assert.deepEqual(violations("relay/proto/x.ts", `const c = await Deno.connect({ port: 1 });`), [
    "relay/proto/x.ts uses Deno.connect: pure files take sockets, clocks and files injected",
  ]);
  assert.match(violations("relay/proto/x.ts", `setTimeout(f, 1);`)[0]!, /setTimeout/);
  assert.match(violations("relay/proto/x.ts", `import net from "node:net";`)[0]!, /node:net/);
  assert.deepEqual(violations("config/schema.ts", `import { x } from "../relay/mod.ts";`), [
    'config/schema.ts imports "../relay/mod.ts": config/ imports no service',
  ]);
  assert.deepEqual(violations("deploy/edge.ts", `import { RelayCore } from "../relay/server/relay_core.ts";`), [
    'deploy/edge.ts imports "../relay/server/relay_core.ts": other folders only through relay/mod.ts',
  ]);
  assert.match(
    violations("relay/mod.ts", `import { meshFromConfig } from "../mesh/mod.ts";`)[0]!,
    /never imports mesh/,
  );
  assert.deepEqual(violations("relay/server/client.ts", `import { x } from "../proto/codec_v1.ts"; // Deno.exit`), []);
  assert.deepEqual(violations("tests/relay_test.ts", `import { x } from "../relay/proto/codec_v1.ts";`), []);
});

Deno.test("layout: deno task test runs every folder that holds tests", async () => {
  const task: string = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks.test;
  const tests = (await sourceFiles()).filter((f) => f.endsWith("_test.ts") && f.includes("/"));
  const folders = new Set(tests.map((f) => f.split("/")[0]!));
  const missing = [...folders].filter((d) => !task.split(/\s+/).includes(`${d}/`));
  assert.deepEqual(missing, [], "add these folders to the test task in deno.json");
});
