/**
 * @module
 * The `/relay` upgrade on the raw transport and everything read after it:
 * the 101 (derp `Upgrade: iroh derp http`, or WebSocket with the 1.x
 * subprotocol), the {@link Client} from the core, and the read loop that cuts
 * frames from socket bytes (derp stream or RFC 6455 feeders) and hands them
 * to the client. The loop waits when the client asks it to (rate limit,
 * handshake verification), which is how backpressure reaches TCP; its read
 * buffer adapts to the peer's pace within a process-wide
 * {@link ReadBudget}. Writes go through `stream_sender.ts`.
 */

import { type ByteConn, closeQuietly, isConnectionGone, respondAndClose, writeAll } from "./byte_conn.ts";
import { DERP_HEADER_LEN, DerpFrameReader } from "../proto/codec_derp.ts";
import type { Client } from "../server/client.ts";
import { httpErrorResponse, SECURITY_HEADERS } from "./endpoints.ts";
import { DERP_STREAM, WS_BINARY } from "../proto/framing.ts";
import { DERP, type Generation, messageType, V1, V2 } from "../proto/generation.ts";
import {
  checkClientAuthHeader,
  classifyUpgrade,
  DERP_UPGRADE,
  header,
  HttpError,
  presentedToken,
  type RequestHead,
  serializeResponse,
} from "./http1.ts";
import { StreamSender } from "./stream_sender.ts";
import type { TransportContext } from "./tcp.ts";
import { closeCode, wsAccept, WsClose, wsHeaderLen, WsOpcode, WsProtocolError, WsReader } from "../proto/ws_frame.ts";

/** Smallest read buffer, bytes: idle connections hold only this much. */
const READ_MIN = 2 * 1024;
/** Largest read buffer, bytes. */
const READ_MAX = 256 * 1024;
/**
 * Bytes of read buffer above {@link READ_MIN}, summed over all upgraded
 * connections of a process. A buffer grows after full reads (a busy peer)
 * and shrinks only after quiet reads, so a peer that bursts and then goes
 * silent keeps a large buffer while its read is pending; this budget bounds
 * what all such peers together can hold (they then read in smaller pieces).
 */
export const READ_BUDGET_BYTES = 64 * 1024 * 1024;

/** The shared allowance of large read buffers (see {@link READ_BUDGET_BYTES}). */
export class ReadBudget {
  #left: number;
  /** @param bytes total allowance */
  constructor(bytes: number = READ_BUDGET_BYTES) {
    this.#left = bytes;
  }
  /** Takes `n` bytes if available. */
  take(n: number): boolean {
    if (n > this.#left) return false;
    this.#left -= n;
    return true;
  }
  /** Gives `n` bytes back. */
  give(n: number): void {
    this.#left += n;
  }
  /** Bytes still available. */
  get left(): number {
    return this.#left;
  }
}

/** Used when the context brings none (tests, the edge). */
const defaultReadBudget = new ReadBudget();
/** Largest WebSocket message (1.x `MAX_FRAME_SIZE`), bytes. */
const WS_MAX_MESSAGE = 1024 * 1024;

/** Answers the `/relay` upgrade and runs the relay protocol until the connection ends. */
export async function upgrade(
  conn: ByteConn,
  head: RequestHead,
  early: Uint8Array,
  remote: string,
  acceptedAt: number,
  ctx: TransportContext,
): Promise<void> {
  const core = ctx.core;
  let up;
  try {
    up = classifyUpgrade(head);
    if (up.kind === "ws" && up.generation === "1.x") checkClientAuthHeader(head);
  } catch (e) {
    if (!(e instanceof HttpError)) throw e;
    core.log.debug(`${remote}: upgrade refused: ${e.message}`);
    await respondAndClose(conn, httpErrorResponse(e, true));
    return;
  }
  const headers: [string, string][] = [];
  let gen: Generation;
  let sender: StreamSender;
  if (up.kind === "derp") {
    headers.push(["Upgrade", DERP_UPGRADE]);
    gen = DERP;
    sender = new StreamSender(conn, DERP_STREAM);
  } else {
    headers.push(["Upgrade", "websocket"], ["Connection", "upgrade"], [
      "Sec-WebSocket-Accept",
      wsAccept(up.wsKey),
    ]);
    gen = up.generation === "0.35" ? DERP : up.version === 2 ? V2 : V1;
    if (gen.subprotocol) headers.push(["Sec-WebSocket-Protocol", gen.subprotocol]);
    sender = new StreamSender(conn, WS_BINARY);
  }
  headers.push(...SECURITY_HEADERS);
  try {
    await writeAll(conn, serializeResponse({ status: 101, headers }));
  } catch {
    // The peer left before the 101: this socket is no longer watched by the establish timeout.
    closeQuietly(conn);
    return;
  }
  const token = presentedToken(head);
  const client = core.accept(sender, {
    gen,
    framing: up.kind === "derp" ? "derp" : "websocket",
    acceptedAt,
    remote,
    ...(token !== undefined ? { token } : {}),
  });
  if (core.log.debugEnabled) {
    core.log.debug(`${remote}: upgraded to ${gen.name} ${up.kind} (${header(head, "user-agent") ?? "no user agent"})`);
  }
  await readLoop(conn, client, sender, early, ctx.readBudget ?? defaultReadBudget);
}

/** Cuts frames from socket bytes and feeds them to the client until either side ends. */
async function readLoop(
  conn: ByteConn,
  client: Client,
  sender: StreamSender,
  early: Uint8Array,
  budget: ReadBudget,
): Promise<void> {
  const feed = sender.framing === DERP_STREAM ? derpFeeder(client) : wsFeeder(client, sender);
  let buf = new Uint8Array(READ_MIN);
  let quiet = 0;
  try {
    if (early.length > 0) await feed(early);
    let waiting: Promise<void> | void;
    while (client.state !== "closed") {
      const n = await conn.read(buf);
      if (n === null) {
        client.close("connection closed by peer");
        break;
      }
      const full = n === buf.length;
      waiting = feed(buf.subarray(0, n));
      if (waiting) await waiting;
      // Adapt the buffer: idle clients keep 2 KiB, busy ones read up to 256 KiB at once (within the budget).
      if (full && buf.length < READ_MAX) {
        if (budget.take(buf.length)) buf = new Uint8Array(buf.length * 2);
        quiet = 0;
      } else if (n < buf.length >>> 3 && buf.length > READ_MIN && ++quiet >= 64) {
        budget.give(buf.length >>> 1);
        buf = new Uint8Array(buf.length >>> 1);
        quiet = 0;
      }
    }
  } catch (e) {
    if (e instanceof WsProtocolError) {
      await sender.closeWebSocket(e.code, e.message);
      client.close(`websocket protocol error: ${e.message}`);
    } else if (e instanceof RangeError || e instanceof SyntaxError) {
      client.close(`protocol error: ${e.message}`);
    } else {
      client.close(isConnectionGone(e) ? "connection lost" : `read failed: ${(e as Error).message}`);
    }
  } finally {
    budget.give(buf.length - READ_MIN);
    client.close("connection ended");
  }
}

/**
 * Takes one chunk of socket bytes. Returns a promise only when the client
 * asked to wait (handshake verification, rate limit): the common case costs
 * no promise and no microtask per chunk.
 */
type Feeder = (chunk: Uint8Array) => Promise<void> | void;

function derpFeeder(client: Client): Feeder {
  const reader = new DerpFrameReader();
  // The fast path's own object, taken once: no delegation through the client per frame.
  const fwd = client.forwarder;
  const drain = (): Promise<void> | void => {
    for (;;) {
      const type = reader.read();
      if (type < 0 || client.closed) {
        // The read buffer is reused after this: forward what is pending now.
        fwd.flushRun();
        return;
      }
      const { buf, start, end } = reader;
      if (fwd.onDatagramFrame(type, buf, start, end)) continue;
      fwd.flushRun();
      const r = client.onFrame(type, buf.subarray(start, end), DERP_HEADER_LEN + end - start);
      // Resume with the rest of the chunk once the client is ready.
      if (r) return r.then(drain);
    }
  };
  return (chunk) => {
    reader.push(chunk);
    return drain();
  };
}

function wsFeeder(client: Client, sender: StreamSender): Feeder {
  const reader = new WsReader({ maxMessage: WS_MAX_MESSAGE, expectMasked: true });
  const fwd = client.forwarder;
  const gen = client.gen;
  const drain = (): Promise<void> | void => {
    for (;;) {
      const op = reader.read();
      if (op < 0 || client.closed) return;
      const { buf, start, end } = reader;
      switch (op) {
        case WsOpcode.Binary: {
          // One byte of type in practice (all types < 64); decode the varint generally otherwise.
          const t = buf[start]!;
          if (start < end && t < 64 && fwd.onDatagramFrame(t, buf, start + 1, end)) continue;
          const data = buf.subarray(start, end);
          const { type, offset } = messageType(gen, data);
          const r = client.onFrame(type, data.subarray(offset), wsHeaderLen(data.length, true) + data.length);
          if (r) return r.then(drain);
          continue;
        }
        case WsOpcode.Text:
          // Text messages carry nothing in either generation: skip them.
          continue;
        case WsOpcode.Ping:
          if (!sender.sendControl(WsOpcode.Pong, buf.slice(start, end))) {
            client.close("control queue full: pings arrive faster than the peer reads the pongs");
            return;
          }
          continue;
        case WsOpcode.Pong:
          continue;
        case WsOpcode.Close: {
          const code = closeCode(buf.subarray(start, end));
          return sender.closeWebSocket(WsClose.Normal, "").then(() =>
            client.close(`websocket closed by peer (code ${code})`)
          );
        }
      }
    }
  };
  return (chunk) => {
    reader.push(chunk);
    return drain();
  };
}
