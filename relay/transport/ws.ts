/**
 * @module
 * The `Deno.upgradeWebSocket` transport: carries relay frames over a
 * WebSocket the runtime already parsed, the only form edge platforms offer.
 * It serves iroh 1.x (`iroh-relay-v1`/`-v2`) and iroh 0.35's WebSocket mode;
 * the 0.35 `iroh derp http` upgrade needs the raw listener
 * (`tcp.ts`) and is refused with a clear 400 by the fetch handler.
 *
 * Differences from the raw transport, forced by the WebSocket API:
 * - reading cannot be paused, so messages that arrive while the client waits
 *   (handshake verification, rate limit) are queued, with a byte cap that
 *   closes the connection instead of growing memory;
 * - `send` cannot block, so the sender waits while `bufferedAmount` is above
 *   a high-water mark; the core's write timeout then catches a stuck peer.
 */

import type { Client, FrameSender } from "../server/client.ts";
import { MESSAGES } from "../proto/framing.ts";
import { type Generation, messageType } from "../proto/generation.ts";
import type { RelayCore } from "../server/relay_core.ts";

/** Unprocessed inbound bytes allowed while the client is paused. */
const MAX_PENDING_BYTES = 4 * 1024 * 1024;
/** Outbound bytes buffered in the socket before `send` waits. */
const HIGH_WATER_BYTES = 1024 * 1024;
/** Poll period while waiting for the socket buffer to drain, ms. */
const DRAIN_POLL_MS = 5;

/** A WebSocket as the runtime gives it (the subset used here). */
export interface RuntimeWebSocket extends EventTarget {
  /** Set to "arraybuffer" so binary messages arrive as ArrayBuffer. */
  binaryType: BinaryType;
  /** Bytes queued by `send` and not yet written. */
  readonly bufferedAmount: number;
  /** Socket state. */
  readonly readyState: number;
  /** Queues one message. */
  send(data: Uint8Array<ArrayBuffer>): void;
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void;
}

/** {@link FrameSender} over a runtime WebSocket: one message per frame. */
class WebSocketSender implements FrameSender {
  readonly framing = MESSAGES;
  readonly #ws: RuntimeWebSocket;

  constructor(ws: RuntimeWebSocket) {
    this.#ws = ws;
  }

  async write(bytes: Uint8Array): Promise<void> {
    const ws = this.#ws;
    // MESSAGES framing (`[body len u32 BE][body]`), split in place. No copy of our own: Deno's
    // `send` copies the bytes before it returns (tests/edge_test.ts checks this with a burst that
    // would arrive corrupted otherwise), and the client reuses `bytes` only after we return.
    for (let off = 0; off + 4 <= bytes.length;) {
      const n = ((bytes[off]! << 24) >>> 0) + (bytes[off + 1]! << 16) + (bytes[off + 2]! << 8) + bytes[off + 3]!;
      if (ws.readyState !== WebSocket.OPEN) throw new Error("WebSocket is not open");
      ws.send(bytes.subarray(off + 4, off + 4 + n) as Uint8Array<ArrayBuffer>);
      off += 4 + n;
    }
    while (ws.bufferedAmount > HIGH_WATER_BYTES && ws.readyState === WebSocket.OPEN) {
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    }
  }

  close(): void {
    try {
      this.#ws.close(1000);
    } catch {
      // already closing
    }
  }
}

/** Connection facts for {@link serveWebSocket}. */
export interface WebSocketInfo {
  /** Negotiated vocabulary (DERP for 0.35 WebSocket, V1/V2 for 1.x). */
  gen: Generation;
  /** When the request arrived (core clock). */
  acceptedAt: number;
  /** Token for `shared_token` access. */
  token?: string;
  /** Peer address, for logs. */
  remote: string;
}

/**
 * Runs the relay protocol on an upgraded WebSocket. Call right after
 * `Deno.upgradeWebSocket`; the client starts when the socket opens.
 */
export function serveWebSocket(core: RelayCore, ws: RuntimeWebSocket, info: WebSocketInfo): void {
  ws.binaryType = "arraybuffer";
  const sender = new WebSocketSender(ws);
  let client: Client | null = null;
  let busy = false;
  const pending: Uint8Array[] = [];
  let pendingBytes = 0;

  // One message to the client; a promise when the client asks to wait before the next one.
  const deliver = (c: Client, data: Uint8Array): Promise<void> | void => {
    // Hot path (as on the raw listener): a well-formed datagram, no object built. Every
    // frame type is below 64, so the 1.x varint type is one byte.
    const t = data.length > 0 ? data[0]! : 64;
    const fwd = c.forwarder;
    if (t < 64 && fwd.onDatagramFrame(t, data, 1, data.length)) {
      fwd.flushRun();
      return;
    }
    fwd.flushRun();
    let type: number;
    let offset: number;
    try {
      ({ type, offset } = messageType(c.gen, data));
    } catch (e) {
      c.close(`protocol error: ${(e as Error).message}`);
      return;
    }
    return c.onFrame(type, data.subarray(offset), data.length + 2);
  };

  // Feeds queued messages in order, pausing whenever the client asks to wait.
  const pump = async (wait?: Promise<void>) => {
    busy = true;
    try {
      if (wait) await wait;
      while (pending.length > 0 && client !== null && !client.closed) {
        const data = pending.shift()!;
        pendingBytes -= data.length;
        const r = deliver(client, data);
        if (r) await r;
      }
    } finally {
      busy = false;
    }
  };

  ws.addEventListener("open", () => {
    client = core.accept(sender, {
      gen: info.gen,
      framing: "websocket",
      acceptedAt: info.acceptedAt,
      remote: info.remote,
      ...(info.token !== undefined ? { token: info.token } : {}),
    });
    if (pending.length) pump();
  });
  ws.addEventListener("message", (e) => {
    const data = (e as MessageEvent).data;
    // Text messages carry nothing in either generation.
    if (!(data instanceof ArrayBuffer)) return;
    if (!busy && client !== null && pending.length === 0) {
      // Nothing queued: deliver now, without a promise per message.
      if (client.closed) return;
      const r = deliver(client, new Uint8Array(data));
      if (r) pump(r);
      return;
    }
    pending.push(new Uint8Array(data));
    pendingBytes += data.byteLength;
    if (pendingBytes > MAX_PENDING_BYTES) {
      client?.close("too many unprocessed messages while paused");
      return;
    }
    if (!busy && client !== null) pump();
  });
  ws.addEventListener("close", () => client?.close("websocket closed"));
  ws.addEventListener("error", () => client?.close("websocket error"));
}
