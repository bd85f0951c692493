/**
 * @module
 * The relay under test, as its own process: `deno run bench/relay_server.ts
 * '<toml>'`. It does what `main.ts` does for the relay alone (config through
 * {@link configFromText}, a logger at the configured level writing to
 * stderr, the `[mesh]` backend, {@link startRelay}) without the other
 * services, so the benchmark depends only on `relay/`, `mesh/`, `config/`
 * and `log/`.
 *
 * Prints `{"event":"listening","port":N,"metricsPort":M}` once serving, and
 * closes cleanly on SIGTERM or SIGINT.
 */

import { configFromText } from "../config/mod.ts";
import { createLogger } from "../log/mod.ts";
import { addMeshMetrics, meshFromConfig } from "../mesh/mod.ts";
import { startRelay } from "../relay/mod.ts";

if (import.meta.main) {
  const { config, warnings } = configFromText(Deno.args[0] ?? "", "bench relay config");
  const log = createLogger({ level: config.log.level, format: config.log.format });
  for (const w of warnings) log.warn(`config ${w}`);
  const relayLog = log.child("relay");
  const mesh = config.mesh ? meshFromConfig(config.mesh, { log: relayLog }) : undefined;
  const relay = await startRelay(config, { log: relayLog, ...(mesh ? { core: { mesh } } : {}) });
  if (mesh) addMeshMetrics(relay.core.metrics, mesh);
  console.log(JSON.stringify({ event: "listening", port: relay.httpAddr?.port, metricsPort: relay.metricsAddr?.port }));
  const stop = Promise.withResolvers<void>();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => stop.resolve());
  await stop.promise;
  await relay.close();
  Deno.exit(0);
}
