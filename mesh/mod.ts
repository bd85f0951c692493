/**
 * @module
 * The instance mesh backends: several relay instances behind one URL, linked
 * through Redis pub/sub ({@link RedisMesh}) or Deno KV ({@link KvMesh}). The
 * relay core defines the small {@link InstanceMesh} interface it needs
 * (`relay/mod.ts`); `main.ts` and `deploy/edge.ts` build the configured
 * backend with {@link meshFromConfig} and hand it to the relay, so `relay/`
 * never imports this folder.
 */

export { addMeshMetrics, meshFromConfig } from "./open.ts";
export { KvMesh, type KvMeshOptions, openKv } from "./kv.ts";
export { DEFAULT_MESH_BUFFER_BYTES, RedisMesh, type RedisMeshOptions } from "./redis.ts";
