/**
 * @module
 * Starts a relay for one behaviour test and closes everything it opened:
 * clients first (waiting for their readers to end), then the relay. Tests
 * connect through {@link RelayScope.connect} so nothing leaks when an
 * assertion fails halfway.
 */

import assert from "node:assert/strict";
import { configFromText } from "../../config/mod.ts";
import { type RelayService, type StartOptions, startRelay } from "../../relay/mod.ts";
import { type ClientKind, connectClient, type ConnectOptions, type TestRelayClient } from "./relay_client.ts";
import { FakeClock } from "./mem_relay.ts";

/** The four client kinds, in the order the shared cases run them. */
export const KINDS: readonly ClientKind[] = ["derp", "ws035", "v1", "v2"];

/** True for iroh 0.35 client kinds. */
export function is035(kind: ClientKind): boolean {
  return kind === "derp" || kind === "ws035";
}

/** A running relay plus the clients and sockets a test opened. */
export interface RelayScope {
  /** The relay. */
  relay: RelayService;
  /** Port of the plain HTTP listener. */
  port: number;
  /** The relay core's clock (advance it to trigger timers). */
  clock: FakeClock;
  /** Connects (and authenticates unless `noHandshake`); `ready` (default true) waits for a Pong so the client is registered. */
  connect(kind: ClientKind, opts?: ConnectOptions & { ready?: boolean; port?: number }): Promise<TestRelayClient>;
  /** Registers a socket to close at the end. */
  own<T extends { close(): void }>(c: T): T;
}

/** Options of {@link withRelay}. */
export interface ScopeOptions {
  /** Extra TOML (top-level keys first, then tables). */
  toml?: string;
  /** Keep the metrics listener (on 127.0.0.1:0) instead of disabling it. */
  metrics?: boolean;
  /** Core overrides; the clock is always the scope's {@link FakeClock}. */
  core?: StartOptions["core"];
}

/** Rejects after `ms` with a message naming `what`. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => reject(new Error(`Timed out (${ms} ms): ${what}`)), ms)
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `fn` against a fresh relay on 127.0.0.1:0, closing everything afterwards. */
export async function withRelay(opts: ScopeOptions, fn: (s: RelayScope) => Promise<void>): Promise<void> {
  const metrics = opts.metrics ? 'metrics_bind_addr = "127.0.0.1:0"\n' : "enable_metrics = false\n";
  const { config } = configFromText(`http_bind_addr = "127.0.0.1:0"\n${metrics}${opts.toml ?? ""}`, "test.toml");
  const clock = new FakeClock();
  const relay = await startRelay(config, { core: { tickMs: 20, ...opts.core, now: clock.now } });
  const clients: TestRelayClient[] = [];
  const owned: { close(): void }[] = [];
  const port = relay.httpAddr?.port ?? 0;
  const scope: RelayScope = {
    relay,
    port,
    clock,
    async connect(kind, o = {}) {
      const c = await connectClient(o.port ?? port, kind, o);
      clients.push(c);
      if (o.ready !== false && !o.noHandshake) await c.ping();
      return c;
    },
    own(c) {
      owned.push(c);
      return c;
    },
  };
  try {
    await fn(scope);
  } finally {
    for (const c of clients) c.close();
    for (const c of owned) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    await Promise.all(clients.map((c) => c.ended));
    await relay.close();
  }
}

/** Sends a unique payload from `a` to `b` and checks `b` receives it from `a`'s key. */
export async function exchange(a: TestRelayClient, b: TestRelayClient, label = `${a.kind}->${b.kind}`): Promise<void> {
  const text = `${label} ${crypto.randomUUID()}`;
  await a.send(b.publicKey, new TextEncoder().encode(text));
  for (;;) {
    const got = await b.recv(5000);
    if (new TextDecoder().decode(got.data) !== text) continue; // an older datagram
    assert.deepEqual(got.src, a.publicKey);
    return;
  }
}

/**
 * Sends a Ping and returns every message that arrived before its Pong
 * (server pings are answered, as a real client would).
 */
export async function messagesBeforePong(c: TestRelayClient): Promise<string[]> {
  const data = crypto.getRandomValues(new Uint8Array(8));
  await c.sendMsg({ type: "Ping", data });
  const seen: string[] = [];
  for (;;) {
    const m = await c.next(5000);
    if (m.type === "Pong" && m.data.every((b, i) => b === data[i])) return seen;
    seen.push(m.type);
  }
}
