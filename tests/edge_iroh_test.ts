/**
 * The edge entry (`deno serve deploy/edge.ts`, the form edge platforms run)
 * with the real iroh 1.x client: two endpoints in isolated namespaces echo
 * 1 MiB through it, relay path only, and iroh 0.35's `iroh derp http` upgrade
 * gets the 400 that says it needs the self-hosted listener.
 */

import assert from "node:assert/strict";
import { assertRelayedEcho, echoThroughRelay, logEcho, RelayWireObserver } from "./support/iroh_echo.ts";
import { Netns } from "./support/netns.ts";
import { connectClient } from "./support/relay_client.ts";
import { withTimeout } from "./support/relay_scope.ts";

const EDGE = new URL("../deploy/edge.ts", import.meta.url).pathname;

/** Runs `deno serve deploy/edge.ts` on a random loopback port for the duration of `fn`. */
async function withEdgeServer(fn: (port: number) => Promise<void>): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["serve", "--allow-env", "--allow-read", "--host", "127.0.0.1", "--port", "0", EDGE],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let out = "";
  const collect = async (stream: ReadableStream<Uint8Array>, onText: () => void) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      out += chunk;
      onText();
    }
  };
  try {
    const port = await withTimeout(
      new Promise<number>((resolve, reject) => {
        const check = () => {
          const m = /Listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        };
        collect(child.stdout, check).then(() => reject(new Error(`deno serve exited: ${out}`)), reject);
        collect(child.stderr, check).catch(() => {});
      }),
      30_000,
      "deno serve to listen",
    );
    await fn(port);
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
}

Deno.test("real iroh 1.x endpoints echo 1 MiB through the relay under `deno serve deploy/edge.ts`", async () => {
  await withEdgeServer(async (port) => {
    const wires = [new RelayWireObserver(), new RelayWireObserver()] as const;
    await using nsA = await Netns.create([wires[0].forward(port)]);
    await using nsB = await Netns.create([wires[1].forward(port)]);
    const r = await echoThroughRelay(null, nsA, nsB);
    logEcho("edge (deno serve)", r, wires);
    // The relay is another process here: the path stats and the bridges are the evidence.
    assertRelayedEcho(r, false);
    for (const w of wires) {
      assert.deepEqual(w.negotiated, ["iroh-relay-v2"]);
      assert.deepEqual(w.problems, []);
      assert.ok(w.down.has(6) || w.down.has(7), `no datagram frames from the relay: ${[...w.down]}`);
    }
  });
});

Deno.test("`deno serve deploy/edge.ts` serves 0.35 WebSocket clients and refuses the derp upgrade clearly", async () => {
  await withEdgeServer(async (port) => {
    const a = await connectClient(port, "ws035");
    const b = await connectClient(port, "v2");
    try {
      await a.ping();
      await a.send(b.publicKey, new TextEncoder().encode("0.35 ws to 1.x"));
      assert.equal(new TextDecoder().decode((await b.recv()).data), "0.35 ws to 1.x");
      await assert.rejects(connectClient(port, "derp"), /400 .*needs the self-hosted listener/);
    } finally {
      a.close();
      b.close();
    }
  });
});
