/**
 * @module
 * In-memory harness for the relay core: a {@link RelayCore} with a fake
 * clock, and {@link MemConn} connections whose frames go straight to
 * `Client.onFrame` and whose sent batches are recorded. No sockets, so the
 * registry, queues, timers and handshakes are tested deterministically.
 */

import { ed25519 } from "@noble/curves/ed25519";
import type { Client, FrameSender } from "../../relay/server/client.ts";
import { decodeDerp, type DerpMsg, encodeDerpWs } from "../../relay/proto/codec_derp.ts";
import { decodeV1, encodeV1, readV1Type, type V1Msg } from "../../relay/proto/codec_v1.ts";
import { MESSAGES, splitMessages } from "../../relay/proto/framing.ts";
import { DERP, type Generation, V1, V2, type WireMsg } from "../../relay/proto/generation.ts";
import { RelayCore, type RelayOptions } from "../../relay/server/relay_core.ts";
import { clientAuth, clientInfo } from "./relay_client.ts";

/** A controllable clock: real time plus an offset the test advances. */
export class FakeClock {
  #offset = 0;
  /** Current time, ms. */
  now = (): number => performance.now() + this.#offset;
  /** Moves time forward by `ms`. */
  advance(ms: number): void {
    this.#offset += ms;
  }
}

/** A recording {@link FrameSender}: decodes each write back into messages. */
export class MemSender implements FrameSender {
  /** Length-delimited bodies, so writes can be decoded message by message. */
  readonly framing = MESSAGES;
  /** Every message written, in order. */
  readonly sent: WireMsg[] = [];
  /** Messages per write call (to check ordering and batching inside one write). */
  readonly batches: WireMsg[][] = [];
  /** True once closed by the client. */
  closed = false;
  /** When true, writes never complete (a peer that stopped reading). */
  stalled = false;
  readonly #gen: Generation;
  #waiters: (() => void)[] = [];

  /** @param gen vocabulary to decode writes with */
  constructor(gen: Generation) {
    this.#gen = gen;
  }

  /** Decodes and records one write. */
  write(bytes: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new Error("closed"));
    const batch = splitMessages(bytes).map((body) => decodeBody(this.#gen, body.slice()));
    this.batches.push(batch);
    this.sent.push(...batch);
    this.#wake();
    return this.stalled ? new Promise(() => {}) : Promise.resolve();
  }

  /** Marks the connection closed. */
  close(): void {
    this.closed = true;
    this.#wake();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Resolves once `pred` holds (checked after every write or close), or throws after `timeoutMs`. */
  async until(pred: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Timed out waiting for ${what}; sent: ${this.sent.map((m) => m.type).join(", ")}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        timer = setTimeout(r, Math.min(left, 50));
      });
      clearTimeout(timer);
    }
  }

  /** Messages of one type sent so far. */
  ofType<T extends WireMsg["type"]>(type: T): Extract<WireMsg, { type: T }>[] {
    return this.sent.filter((m) => m.type === type) as Extract<WireMsg, { type: T }>[];
  }

  /** Waits for the `n`-th (1-based) message of `type` and returns it. */
  async nth<T extends WireMsg["type"]>(type: T, n = 1, timeoutMs = 2000): Promise<Extract<WireMsg, { type: T }>> {
    await this.until(() => this.ofType(type).length >= n, `${type} #${n}`, timeoutMs);
    return this.ofType(type)[n - 1]!;
  }
}

/** One in-memory connection: its client and what it was sent. */
export interface MemConn {
  /** The relay-side client. */
  client: Client;
  /** What the relay wrote to it. */
  out: MemSender;
  /** Generation spoken. */
  gen: Generation;
  /** Secret key used to authenticate. */
  secret: Uint8Array;
  /** Public key. */
  key: Uint8Array;
  /** Feeds one message from the "client" to the relay, as the transport would. */
  feed(msg: DerpMsg | V1Msg): void | Promise<void>;
  /** Feeds a raw message body (`[type][payload]`). */
  feedBody(body: Uint8Array): void | Promise<void>;
}

/** Generation by short name. */
export const GENS = { derp: DERP, v1: V1, v2: V2 } as const;

/** Decodes a body (`[type][payload]`) the relay sent, in `gen`'s vocabulary. */
export function decodeBody(gen: Generation, body: Uint8Array): WireMsg {
  if (gen === DERP) return decodeDerp(body[0]!, body.subarray(1));
  return decodeV1(body, gen === V2 ? 2 : 1);
}

/** Body (`[type][payload]`) of a message in `gen`'s vocabulary. */
export function bodyOf(gen: Generation, msg: DerpMsg | V1Msg): Uint8Array {
  if (gen === DERP) return encodeDerpWs(msg as DerpMsg);
  return encodeV1(msg as V1Msg, gen === V2 ? 2 : 1);
}

/** A core for tests; remember to `close()` it. */
export function memCore(clock: FakeClock, opts: RelayOptions = {}): RelayCore {
  return new RelayCore({ now: clock.now, tickMs: 5, ...opts });
}

/** Opens a connection without authenticating. */
export function memOpen(
  core: RelayCore,
  gen: Generation,
  secret: Uint8Array = ed25519.utils.randomSecretKey(),
): MemConn {
  const out = new MemSender(gen);
  const client = core.accept(out, {
    gen,
    framing: gen === DERP ? "derp" : "websocket",
    acceptedAt: core.now(),
    remote: "mem",
  });
  const feedBody = (body: Uint8Array) => {
    if (gen === DERP) return client.onFrame(body[0]!, body.subarray(1), body.length + 4);
    const { type, offset } = readV1Type(body);
    return client.onFrame(type, body.subarray(offset), body.length + 6);
  };
  return {
    client,
    out,
    gen,
    secret,
    key: ed25519.getPublicKey(secret),
    feedBody,
    feed: (msg) => feedBody(bodyOf(gen, msg)),
  };
}

/** Opens and authenticates a connection; resolves once the relay registered it (or refused it). */
export async function memConnect(core: RelayCore, gen: Generation, secret?: Uint8Array): Promise<MemConn> {
  const c = memOpen(core, gen, secret);
  if (gen === DERP) {
    await c.feed(clientInfo(c.secret));
    return c;
  }
  const ch = await c.out.nth("ServerChallenge");
  await c.feed(clientAuth(c.secret, ch.challenge));
  return c;
}

/** The datagram payloads `c` was sent, with their sources as hex-free byte arrays. */
export function datagramsOf(c: MemConn): { src: Uint8Array; data: Uint8Array }[] {
  const out: { src: Uint8Array; data: Uint8Array }[] = [];
  for (const m of c.out.sent) {
    if (m.type === "RecvPacket") out.push({ src: m.srcKey, data: m.packet });
    else if (m.type === "RelayToClientDatagram" || m.type === "RelayToClientDatagramBatch") {
      out.push({ src: m.srcKey, data: m.contents });
    }
  }
  return out;
}

/** A datagram message from `c` to `dst` in `c`'s vocabulary. */
export function datagramTo(c: MemConn, dst: Uint8Array, data: Uint8Array): DerpMsg | V1Msg {
  return c.gen === DERP
    ? { type: "SendPacket", dstKey: dst, packet: data }
    : { type: "ClientToRelayDatagram", dstKey: dst, ecn: 0, contents: data };
}
