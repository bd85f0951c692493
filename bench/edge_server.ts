/**
 * @module
 * The edge relay under test (issue 14): the relay core behind
 * `createFetchHandler` (`Deno.upgradeWebSocket`) under `Deno.serve`, built
 * the way `deploy/edge.ts` builds it with its default config (no
 * `RELAY_CONFIG`, no mesh). It goes through `relay/mod.ts` and
 * `config/mod.ts` rather than importing `deploy/edge.ts`, which runs at
 * import and is not a module other folders may import.
 *
 * Prints `{"event":"listening","port":N}`; exits on SIGTERM or SIGINT.
 */

import { configFromText } from "../config/mod.ts";
import { createLogger } from "../log/mod.ts";
import { createFetchHandler, RelayCore } from "../relay/mod.ts";

if (import.meta.main) {
  const { config } = configFromText("", "defaults");
  const log = createLogger({ level: config.log.level, format: config.log.format }).child("relay");
  const core = new RelayCore({
    access: config.access,
    ...(config.limits.clientRx ? { clientRx: config.limits.clientRx } : {}),
    keyCacheCapacity: config.keyCacheCapacity,
    log,
  });
  const handler = createFetchHandler(core, { health: { version: "bench", gitHash: "bench" } });
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: (addr) => console.log(JSON.stringify({ event: "listening", port: addr.port })),
  }, (req, info) => handler(req, info));
  const stop = () => {
    core.close();
    server.shutdown().finally(() => Deno.exit(0));
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, stop);
}
