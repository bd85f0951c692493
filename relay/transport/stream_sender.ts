/**
 * @module
 * The write side of an upgraded raw connection ({@link StreamSender}): the
 * client's encoded frame batches and the read loop's WebSocket control
 * replies, one write call per batch, serialized. Control replies waiting to
 * be written are capped ({@link MAX_CONTROL_QUEUE_BYTES},
 * {@link MAX_CONTROL_QUEUE_FRAMES}): a peer that sends pings without reading
 * is disconnected (`control_queue_full`) instead of growing memory.
 */

import { type ByteConn, closeQuietly, writeAll } from "./byte_conn.ts";
import type { FrameSender } from "../server/client.ts";
import { type Framing, WS_BINARY } from "../proto/framing.ts";
import { closePayload, writeWsHeader, wsHeaderLen, WsOpcode } from "../proto/ws_frame.ts";

/** WebSocket control frames (pong, close) waiting to be written, bytes, before the peer is disconnected. */
export const MAX_CONTROL_QUEUE_BYTES = 64 * 1024;
/** WebSocket control frames waiting to be written, count, before the peer is disconnected. */
export const MAX_CONTROL_QUEUE_FRAMES = 64;

/**
 * The write side of a raw connection: whole encoded frames from the client
 * (derp stream or WebSocket framing), plus WebSocket control frames from the
 * read loop, written in order.
 */
export class StreamSender implements FrameSender {
  /** How frames are wrapped. */
  readonly framing: Framing;
  readonly #conn: ByteConn;
  #tail: Promise<void> | null = null;
  #closed = false;
  /** Control frames queued and not yet written (count, bytes). */
  #controlFrames = 0;
  #controlBytes = 0;

  /** @param conn socket; @param framing derp stream or WebSocket */
  constructor(conn: ByteConn, framing: Framing) {
    this.#conn = conn;
    this.framing = framing;
  }

  /** Writes encoded frames (see {@link FrameSender.write}). */
  write(bytes: Uint8Array): Promise<void> {
    return this.#write(bytes);
  }

  #write(buf: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("Connection closed"));
    // Chain only behind a write in flight; the common case is one write at a time.
    const p = this.#tail === null ? writeAll(this.#conn, buf) : this.#tail.then(() => writeAll(this.#conn, buf));
    const tail = p.then(() => {
      if (this.#tail === tail) this.#tail = null;
    }, () => {
      if (this.#tail === tail) this.#tail = null;
    });
    this.#tail = tail;
    return p;
  }

  /**
   * Queues a WebSocket control frame (pong, close) in order with data.
   * Write errors are ignored (the read side sees the connection end).
   * @returns false, queuing nothing, when {@link MAX_CONTROL_QUEUE_FRAMES} or
   *   {@link MAX_CONTROL_QUEUE_BYTES} would be exceeded: the caller disconnects
   */
  sendControl(opcode: number, payload: Uint8Array): boolean {
    const size = wsHeaderLen(payload.length) + payload.length;
    if (this.#controlFrames >= MAX_CONTROL_QUEUE_FRAMES || this.#controlBytes + size > MAX_CONTROL_QUEUE_BYTES) {
      return false;
    }
    const frame = new Uint8Array(size);
    frame.set(payload, writeWsHeader(frame, 0, opcode, payload.length));
    this.#controlFrames++;
    this.#controlBytes += size;
    this.#write(frame).catch(() => {}).finally(() => {
      this.#controlFrames--;
      this.#controlBytes -= size;
    });
    return true;
  }

  /** Sends a close frame (best effort, bounded to 1 s), for protocol errors and peer closes. */
  async closeWebSocket(code: number, reason: string): Promise<void> {
    if (this.framing !== WS_BINARY || this.#closed) return;
    const payload = closePayload(code, reason);
    const frame = new Uint8Array(wsHeaderLen(payload.length) + payload.length);
    frame.set(payload, writeWsHeader(frame, 0, WsOpcode.Close, payload.length));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#write(frame).catch(() => {}),
      new Promise<void>((r) => timer = setTimeout(r, 1000)),
    ]);
    clearTimeout(timer);
  }

  /** Closes the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#conn);
  }
}
