import assert from "node:assert/strict";

/** Files that must stay free of `Deno.*` (STYLE: pure protocol files; transports adapt sockets). */
const PURE = [
  "frame_type.ts",
  "chunk_reader.ts",
  "codec_derp.ts",
  "codec_v1.ts",
  "ws_frame.ts",
  "http1.ts",
  "handshake.ts",
  "ed25519.ts",
  "public_key.ts",
  "generation.ts",
  "framing.ts",
  "frame_length.ts",
  "mesh.ts",
  "client.ts",
  "clients.ts",
  "rate_limit.ts",
  "access.ts",
  "endpoints.ts",
  "metrics.ts",
  "mesh_codec.ts",
  "resp.ts",
  "../config/schema.ts",
];

/** Source without comments, so prose may still name `Deno.serve`. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

Deno.test("pure relay files do not use Deno.* (sockets, files and env stay in transports)", async () => {
  for (const f of PURE) {
    const text = await Deno.readTextFile(new URL(f, import.meta.url));
    assert.doesNotMatch(code(text), /\bDeno\./, f);
  }
});
