/**
 * @module
 * The edge relay under test (issue 14): `deploy/edge.ts`'s handler (the
 * relay core behind `createFetchHandler`, `Deno.upgradeWebSocket`) under
 * `Deno.serve` on a port of its own, as `deno serve deploy/edge.ts` runs it.
 * Its config is the edge's default (no `RELAY_CONFIG`, no mesh).
 *
 * Prints `{"event":"listening","port":N}`; exits on SIGTERM or SIGINT.
 */

import edge from "../deploy/edge.ts";

if (import.meta.main) {
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: (addr) => console.log(JSON.stringify({ event: "listening", port: addr.port })),
  }, edge.fetch);
  const stop = () => server.shutdown().finally(() => Deno.exit(0));
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, stop);
}
