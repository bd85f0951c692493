/**
 * Many instances, one relay URL (issue 6): two relay instances in two
 * processes, linked only through the instance mesh, with real clients on
 * each over real sockets.
 *
 * - Redis: two `main.ts --config` processes with `[mesh] backend = "redis"`
 *   on a throwaway `redis-server`; 0.35 (derp) and 1.x clients; a Redis
 *   restart in the middle.
 * - Deno KV: two `deno serve deploy/edge.ts` processes (the Deno Deploy
 *   entry) with `RELAY_MESH=kv` on one local KV file, 0.35 WebSocket and
 *   1.x clients; and two `main.ts` processes with `backend = "kv"`.
 *   Across processes a local KV file wakes nobody (see `mesh/kv.ts`),
 *   so these run on the poll (10 ms here); Deploy's cross-isolate `watch`
 *   cannot be tested locally.
 *
 * Each process pair serves every step of its test: datagrams both ways in
 * both generations, EndpointGone/PeerGone across instances, a key moving to
 * the other instance, and (Redis) recovery after a restart.
 */

import assert from "node:assert/strict";
import { type ClientKind, connectClient, type TestRelayClient } from "./support/relay_client.ts";
import { withTimeout } from "./support/relay_scope.ts";
import { RedisServer } from "./support/redis_server.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const EDGE = new URL("../deploy/edge.ts", import.meta.url).pathname;
const DENO = Deno.execPath();
const dec = new TextDecoder();

/** One relay process. */
interface Instance {
  port: number;
  output(): string;
  stop(): Promise<void>;
}

/** Spawns `args`, waits (bounded) for a line matching `listening`, returns the port it names. */
async function spawnInstance(args: string[], env: Record<string, string>, listening: RegExp): Promise<Instance> {
  const child = new Deno.Command(DENO, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn();
  let out = "";
  const found = Promise.withResolvers<number>();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) {
      out = (out + dec.decode(chunk)).slice(-20_000);
      const m = listening.exec(out);
      if (m) found.resolve(Number(m[1]));
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  child.status.then((s) => found.reject(new Error(`relay process exited (${s.code}): ${out.slice(-2000)}`)));
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await child.status;
    await pumps;
  };
  try {
    const port = await withTimeout(found.promise, 30_000, `relay process to listen: ${args.join(" ")}`);
    return { port, output: () => out, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function tempToml(text: string): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "relay-mesh-", suffix: ".toml" });
  await Deno.writeTextFile(path, text);
  return path;
}

/** `main.ts --config` with `[mesh]` (`meshToml`) on a loopback port. */
async function mainInstance(meshToml: string, id: string): Promise<Instance> {
  const path = await tempToml(
    [
      `http_bind_addr = "127.0.0.1:0"`,
      `enable_stun = false`,
      `enable_metrics = false`,
      `[mesh]`,
      meshToml,
      `instance_id = "${id}"`,
    ].join("\n"),
  );
  try {
    return await spawnInstance(
      ["run", "-A", "--unstable-kv", MAIN, "--config", path],
      {},
      /relay listening on http:\/\/127\.0\.0\.1:(\d+)/,
    );
  } finally {
    await Deno.remove(path);
  }
}

/** `deno serve deploy/edge.ts` with the KV mesh from the environment, as on Deno Deploy. */
function edgeInstance(kvPath: string, id: string): Promise<Instance> {
  return spawnInstance(
    ["serve", "-A", "--unstable-kv", "--host", "127.0.0.1", "--port", "0", EDGE],
    {
      RELAY_MESH: "kv",
      RELAY_MESH_KV_PATH: kvPath,
      RELAY_MESH_KV_POLL_MS: "10",
      RELAY_MESH_INSTANCE_ID: id,
    },
    /Listening on http:\/\/127\.0\.0\.1:(\d+)/,
  );
}

/** Clients to close at the end of a test, whatever happens. */
class Clients {
  readonly #all: TestRelayClient[] = [];

  async connect(port: number, kind: ClientKind, secretKey?: Uint8Array): Promise<TestRelayClient> {
    const c = await connectClient(port, kind, secretKey ? { secretKey } : {});
    this.#all.push(c);
    return c;
  }

  async close(): Promise<void> {
    for (const c of this.#all) c.close();
    await Promise.all(this.#all.map((c) => c.ended));
  }
}

/**
 * Sends `text` until `to` receives it (a key's claim reaches the other
 * instance a moment after it connects; real clients retransmit likewise),
 * at most `timeoutMs`; checks the source key.
 */
async function deliver(from: TestRelayClient, to: TestRelayClient, text: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 1;; i++) {
    await from.send(to.publicKey, new TextEncoder().encode(`${text}#${i}`));
    const waitUntil = Math.min(deadline, Date.now() + 300);
    while (Date.now() < waitUntil) {
      let got;
      try {
        got = await to.recv(Math.max(1, waitUntil - Date.now()));
      } catch {
        break;
      }
      if (dec.decode(got.data).startsWith(`${text}#`)) {
        assert.deepEqual(got.src, from.publicKey);
        return;
      }
    }
    if (Date.now() >= deadline) throw new Error(`"${text}" not delivered within ${timeoutMs} ms`);
  }
}

/** The steps every backend runs on its two instances; `old` is the 0.35 client kind the entry serves. */
async function meshSteps(
  t: Deno.TestContext,
  one: Instance,
  two: Instance,
  old: "derp" | "ws035",
  extra?: (clients: Clients) => Promise<void>,
): Promise<void> {
  const clients = new Clients();
  try {
    await t.step(`datagrams cross both ways: 0.35 (${old}) and 1.x, and between generations`, async () => {
      const a35 = await clients.connect(one.port, old);
      const b35 = await clients.connect(two.port, old);
      await deliver(a35, b35, "0.35 one to two");
      await deliver(b35, a35, "0.35 two to one");
      const a1 = await clients.connect(one.port, "v2");
      const b1 = await clients.connect(two.port, "v2");
      await deliver(a1, b1, "1.x one to two");
      await deliver(b1, a1, "1.x two to one");
      await deliver(a35, b1, "0.35 to 1.x across");
      await deliver(b1, a35, "1.x to 0.35 across");
    });

    await t.step("EndpointGone (1.x) and PeerGone (0.35) reach a peer on the other instance", async () => {
      const leaver = await clients.connect(one.port, "v2");
      const peer1 = await clients.connect(two.port, "v2");
      const peer035 = await clients.connect(two.port, old);
      await deliver(leaver, peer1, "bye soon");
      await deliver(leaver, peer035, "bye soon");
      leaver.close();
      const gone = await peer1.nextOf("EndpointGone", 10_000);
      assert.deepEqual(gone.key, leaver.publicKey);
      const peerGone = await peer035.nextOf("PeerGone", 10_000);
      assert.deepEqual(peerGone.key, leaver.publicKey);
    });

    await t.step("a key reconnecting on the other instance takes over; datagrams follow it", async () => {
      const sender = await clients.connect(one.port, "v2");
      const first = await clients.connect(one.port, "v2");
      await deliver(sender, first, "to the first connection");
      const moved = await clients.connect(two.port, "v2", first.secretKey);
      await withTimeout(first.ended, 10_000, "the older connection to be closed by the mesh");
      await deliver(sender, moved, "to the key on its new instance");
    });

    if (extra) await extra(clients);
  } finally {
    await clients.close();
  }
}

Deno.test("mesh across processes: Redis pub/sub between two main.ts instances", async (t) => {
  const redis = await RedisServer.start();
  const mesh = `backend = "redis"\nredis_url = "${redis.url}"\nchannel_prefix = "proc-test"`;
  const instances: Instance[] = [];
  try {
    instances.push(await mainInstance(mesh, "redis-1"), await mainInstance(mesh, "redis-2"));
    const [one, two] = instances as [Instance, Instance];
    assert.match(one.output(), /instance mesh: redis/);
    await meshSteps(t, one, two, "derp", async (clients) => {
      await t.step("after a Redis restart both instances reconnect and datagrams cross again", async () => {
        const a = await clients.connect(one.port, "derp");
        const b = await clients.connect(two.port, "v2");
        await deliver(a, b, "before restart");
        await redis.restart();
        await deliver(a, b, "after restart one to two", 15_000);
        await deliver(b, a, "after restart two to one", 15_000);
        assert.match(one.output(), /reconnected to redis:\/\/127\.0\.0\.1/);
      });
    });
  } finally {
    await Promise.all(instances.map((i) => i.stop()));
    await redis.close();
  }
});

Deno.test("mesh across processes: Deno KV between two deploy/edge.ts instances sharing one KV file", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "relay-kv-proc-" });
  const instances: Instance[] = [];
  try {
    instances.push(
      await edgeInstance(`${dir}/mesh.sqlite`, "edge-1"),
      await edgeInstance(`${dir}/mesh.sqlite`, "edge-2"),
    );
    const [one, two] = instances as [Instance, Instance];
    await meshSteps(t, one, two, "ws035");
  } finally {
    await Promise.all(instances.map((i) => i.stop()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mesh across processes: Deno KV between two main.ts instances (derp clients)", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "relay-kv-proc-" });
  const mesh = `backend = "kv"\nkv_path = "${dir}/mesh.sqlite"\nkv_poll_ms = 10`;
  const instances: Instance[] = [];
  try {
    instances.push(await mainInstance(mesh, "kv-1"), await mainInstance(mesh, "kv-2"));
    const [one, two] = instances as [Instance, Instance];
    assert.match(one.output(), /instance mesh: kv/);
    await meshSteps(t, one, two, "derp");
  } finally {
    await Promise.all(instances.map((i) => i.stop()));
    await Deno.remove(dir, { recursive: true });
  }
});
