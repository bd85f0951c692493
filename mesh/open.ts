/**
 * @module
 * Builds the instance mesh backend the config asks for (`[mesh]`, or
 * `RELAY_MESH` on the edge entry) and exports its counters as metrics.
 * `startRelay` and `deploy/edge.ts` call this; the core only sees the
 * {@link InstanceMesh} interface.
 */

import type { MeshConfig } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";
import type { InstanceMesh, RelayMetrics } from "../relay/mod.ts";
import { KvMesh } from "./kv.ts";
import { RedisMesh } from "./redis.ts";

/**
 * A backend for `cfg`, not yet started (the core starts it before
 * listening, and a connection failure then stops the relay from starting).
 */
export function meshFromConfig(cfg: MeshConfig, opts: { log?: Logger } = {}): RedisMesh | KvMesh {
  const common = {
    prefix: cfg.prefix,
    ...(cfg.instanceId !== undefined ? { instanceId: cfg.instanceId } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  };
  if (cfg.backend === "redis") return new RedisMesh({ ...common, target: cfg.redis });
  return new KvMesh({
    ...common,
    ...(cfg.kvPath !== undefined ? { path: cfg.kvPath } : {}),
    ...(cfg.pollMs !== undefined ? { pollMs: cfg.pollMs } : {}),
  });
}

/**
 * Adds the backend's own counters to `metrics`: `mesh_backend{event=…}`
 * (datagrams nobody held, send-buffer overflows, malformed input, errors,
 * reconnects or batches), and for Redis `mesh_link_up` (1 while both
 * connections are up) and `redis_reconnects_total`.
 */
export function addMeshMetrics(metrics: RelayMetrics, mesh: InstanceMesh): void {
  if (!(mesh instanceof RedisMesh) && !(mesh instanceof KvMesh)) return;
  metrics.addGauge({
    name: "mesh_backend",
    help: "Instance mesh backend events since start, by event (monotonic)",
    read: () =>
      Object.entries(mesh.stats).map(([event, v]) => [{ backend: mesh.kind, event: snake(event) }, v as number]),
  });
  if (mesh instanceof RedisMesh) {
    metrics.addGauge({
      name: "mesh_link_up",
      help: "1 while the instance mesh's links to Redis are up",
      read: () => [[{ backend: "redis" }, mesh.up ? 1 : 0]],
    });
    metrics.addFamily({
      name: "redis_reconnects",
      type: "counter",
      help: "Connection attempts to Redis after a link was lost, successful or not",
      read: () => [[{}, mesh.reconnectAttempts]],
    });
  }
}

function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
