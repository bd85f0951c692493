/**
 * @module
 * Edge entry: the relay alone behind `Deno.serve`, in the form edge
 * platforms accept (`deno serve deploy/edge.ts`, or a Deno Deploy project
 * with this file as entrypoint).
 *
 * - Serves iroh 1.x (`iroh-relay-v2`/`-v1`) and iroh 0.35 WebSocket clients,
 *   `/ping`, `/generate_204`, `/healthz`, `/`.
 * - The iroh 0.35 default `Upgrade: iroh derp http` is not a WebSocket and
 *   cannot be answered through `Deno.serve`: such clients get a 400 saying
 *   so. Delta Chat (iroh 0.35 with default settings) therefore needs the
 *   self-hosted binary, not this entry.
 * - Config comes from the TOML file named by `RELAY_CONFIG` (optional); only
 *   `access`, `[limits.client.rx]` and `[mesh]` apply here, listeners are
 *   the platform's business.
 * - Several instances behind one URL (the new Deno Deploy runs isolated
 *   instances that share only a Deno KV database): `RELAY_MESH=kv` (or a
 *   `[mesh]` table) links them through Deno KV, so a datagram for a key
 *   connected to another instance still arrives (`mesh/kv.ts`).
 *   `RELAY_MESH=redis` with `RELAY_MESH_REDIS_URL` uses Redis instead.
 *   Locally, Deno KV needs `--unstable-kv`.
 * - A `[discovery]` table adds `/pkarr/` and `/dns-query` (DoH) here too;
 *   DNS over UDP/TCP is not served from the edge. Use `store = "redis"` so
 *   the instances share their packets (SQLite needs a writable local disk).
 *
 * @example Local run: `RELAY_CONFIG=relay.toml deno serve --allow-env --allow-read --port 3340 deploy/edge.ts`
 */

import { configFromText, loadConfig, meshConfigFromEnv } from "../config/mod.ts";
import { createLogger } from "../log/mod.ts";
import { addMeshMetrics, meshFromConfig } from "../mesh/mod.ts";
import { createFetchHandler, RelayCore } from "../relay/mod.ts";
import { startDiscovery } from "../discovery/mod.ts";
import denoJson from "../deno.json" with { type: "json" };

const path = Deno.env.get("RELAY_CONFIG");
const { config, warnings } = path
  ? await loadConfig(path, { env: Deno.env.toObject() })
  : configFromText("", "defaults");
const log = createLogger({ level: config.log.level, format: config.log.format }).child("relay");
for (const w of warnings) log.warn(`config ${w}`);

const meshConfig = config.mesh ?? meshConfigFromEnv(Deno.env.toObject());
const mesh = meshConfig ? meshFromConfig(meshConfig, { log }) : undefined;

const core = new RelayCore({
  access: config.access,
  ...(config.limits.clientRx ? { clientRx: config.limits.clientRx } : {}),
  keyCacheCapacity: config.keyCacheCapacity,
  log,
  ...(mesh ? { mesh } : {}),
});
if (mesh) addMeshMetrics(core.metrics, mesh);
// Linked before the first request is served, so no datagram is routed without the mesh.
await core.startMesh();
const discovery = config.discovery
  ? await startDiscovery(config.discovery, { dns: false, log: log.child("discovery") })
  : undefined;

if (mesh || discovery) {
  // The mesh's watch and timers (and discovery's eviction sweep) would keep `deno serve` alive after
  // SIGTERM; closing the mesh also removes this instance's directory entries at once instead of
  // letting them expire, and closing discovery flushes its store.
  const stop = () => {
    core.close();
    Promise.allSettled([mesh?.close(), discovery?.close()]).finally(() => Deno.exit(0));
  };
  try {
    Deno.addSignalListener("SIGTERM", stop);
    Deno.addSignalListener("SIGINT", stop);
  } catch {
    // No signals on this platform: it stops isolates itself.
  }
}

const handler = createFetchHandler(core, {
  health: {
    version: denoJson.version,
    gitHash: Deno.env.get("RELAY_GIT_HASH") ?? "unknown",
    ...(discovery ? { services: () => ({ discovery: discovery.health() }) } : {}),
  },
  ...(discovery ? { routes: discovery.routes } : {}),
});

/** The `deno serve` export. */
export default {
  fetch: (req: Request, info: Deno.ServeHandlerInfo) => handler(req, info),
} satisfies Deno.ServeDefaultExport;
