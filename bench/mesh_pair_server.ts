/**
 * @module
 * Two relay instances in one process, linked by the Deno KV mesh, each
 * with its own `Deno.openKv` handle on one SQLite file:
 * `deno run --unstable-kv bench/mesh_pair_server.ts <kv path>`.
 *
 * Within one process `kv.watch` sees the other handle's writes, so this
 * measures the KV mesh woken by `watch` (as on Deno Deploy) rather than by
 * the poll a local file needs across processes; what it cannot show is
 * Deploy's network round trips.
 *
 * Prints `{"event":"listening","port":A,"port2":B}` once both serve, and
 * closes cleanly on SIGTERM or SIGINT.
 */

import { configFromText } from "../config/mod.ts";
import { createLogger } from "../log/mod.ts";
import { KvMesh } from "../mesh/mod.ts";
import { startRelay } from "../relay/mod.ts";

if (import.meta.main) {
  const path = Deno.args[0];
  if (!path) throw new Error("usage: mesh_pair_server.ts <kv path>");
  const toml = `http_bind_addr = "127.0.0.1:0"\nenable_stun = false\nenable_metrics = false\n[log]\nlevel = "warn"`;
  const { config } = configFromText(toml, "bench mesh pair config");
  const log = createLogger({ level: "warn" });
  const kvs = [await Deno.openKv(path), await Deno.openKv(path)];
  const relays = await Promise.all(kvs.map((kv, i) => {
    const mesh = new KvMesh({ kv, prefix: "bench-watch", instanceId: `watch-${i + 1}`, pollMs: 0, log });
    return startRelay(config, { log: log.child(`relay-${i + 1}`), core: { mesh } });
  }));
  console.log(
    JSON.stringify({ event: "listening", port: relays[0]!.httpAddr?.port, port2: relays[1]!.httpAddr?.port }),
  );
  const stop = Promise.withResolvers<void>();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => stop.resolve());
  await stop.promise;
  await Promise.all(relays.map((r) => r.close()));
  for (const kv of kvs) kv.close();
  Deno.exit(0);
}
