/**
 * @module
 * The raw TCP/TLS transport of the relay port: our own HTTP/1.1 request
 * heads, then either a plain endpoint answer (keep-alive) or a `/relay`
 * upgrade carried on the same socket as derp frames or WebSocket frames.
 *
 * Why raw: `Deno.serve` cannot answer the 0.35 `Upgrade: iroh derp http`
 * with a 101 and hand over the socket (spec §0), and one port must serve
 * all three client kinds.
 *
 * Per connection:
 * - until the upgrade, the core's sweeper enforces the establish timeout
 *   (slowloris requests are closed);
 * - after it, frames are cut from the socket bytes and handed to the
 *   {@link Client}; the read loop waits when the client asks it to (rate
 *   limit, handshake verification), which is how backpressure reaches TCP;
 * - writes go through {@link StreamSender}: one buffer per batch, one write
 *   call per batch, serialized. WebSocket control replies (pongs, close)
 *   waiting to be written are capped ({@link MAX_CONTROL_QUEUE_BYTES},
 *   {@link MAX_CONTROL_QUEUE_FRAMES}): a peer that sends pings without
 *   reading is disconnected (`control_queue_full`) instead of growing memory.
 *
 * Connections arrive through an {@link Acceptor} (`admission/`): per-source
 * and global limits were applied before we see them; the slot is released
 * when the connection is finished. The metrics listener runs on this same
 * code (role `metrics`), so it gets the same head timeout and size limits.
 */

import type { AcceptedConn, Acceptor } from "../../admission/mod.ts";
import { DERP_HEADER_LEN, DerpFrameReader } from "../proto/codec_derp.ts";
import { type Client, type FrameSender } from "../server/client.ts";
import { captivePortalEndpoint, type HealthInfo, relayEndpoint, SECURITY_HEADERS } from "./endpoints.ts";
import { DERP_STREAM, type Framing, WS_BINARY } from "../proto/framing.ts";
import { DERP, type Generation, messageType, V1, V2 } from "../proto/generation.ts";
import {
  checkClientAuthHeader,
  classifyUpgrade,
  DERP_UPGRADE,
  header,
  HttpError,
  type HttpResponse,
  isRelayPath,
  parseRequestHead,
  presentedToken,
  requestBodyLength,
  type RequestHead,
  serializeResponse,
  wantsClose,
  WsVersionError,
} from "./http1.ts";
import { ByteBucket } from "../server/rate_limit.ts";
import { findRoute, type HttpRoute, routeRequest, routeResponse } from "./routes.ts";
import type { RelayCore } from "../server/relay_core.ts";
import {
  closeCode,
  closePayload,
  writeWsHeader,
  wsAccept,
  WsClose,
  wsHeaderLen,
  WsOpcode,
  WsProtocolError,
  WsReader,
} from "../proto/ws_frame.ts";

/** The socket surface this transport needs; `Deno.Conn` and `Deno.TlsConn` have it. */
export interface ByteConn {
  /** Reads into `p`; null at EOF. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; returns how much. */
  write(p: Uint8Array): Promise<number>;
  /** Closes both directions. */
  close(): void;
}

/** What a listener serves. */
export type ListenerRole = "relay" | "captive-portal" | "metrics";

/** Shared context of a listener. */
export interface TransportContext {
  /** The relay core. */
  core: RelayCore;
  /**
   * `relay`: everything; `captive-portal`: only `/generate_204` (plain port
   * beside TLS); `metrics`: only {@link TransportContext.endpoint}.
   */
  role: ListenerRole;
  /** Answers plain requests on a `metrics` listener. */
  endpoint?: (head: RequestHead) => HttpResponse;
  /** What `/healthz` reports. */
  health: HealthInfo;
  /** `[limits] accept_conn_limit/burst`: new connections per second. */
  acceptLimit?: { perSecond: number; burst: number };
  /** Other services' HTTP routes (discovery, mailbox, ACME). */
  routes?: readonly HttpRoute[];
  /** Scheme the listener is reached by, for the URLs routes see. */
  scheme?: "http" | "https";
  /** Allowance of large read buffers shared by the process's relay connections. */
  readBudget?: ReadBudget;
}

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
/** Largest request body skipped on a plain endpoint, bytes. */
const MAX_SKIPPED_BODY = 64 * 1024;
/** WebSocket control frames (pong, close) waiting to be written, bytes, before the peer is disconnected. */
export const MAX_CONTROL_QUEUE_BYTES = 64 * 1024;
/** WebSocket control frames waiting to be written, count, before the peer is disconnected. */
export const MAX_CONTROL_QUEUE_FRAMES = 64;

/** Writes all of `data`. */
export async function writeAll(conn: ByteConn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

function closeQuietly(conn: ByteConn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/**
 * Accepts connections from `listener` until it closes.
 * @returns when the listener is closed
 */
export async function serveListener(listener: Acceptor, ctx: TransportContext): Promise<void> {
  const limit = ctx.acceptLimit;
  const bucket = limit ? new ByteBucket(limit.perSecond, limit.burst, ctx.core.now()) : null;
  for (;;) {
    if (bucket !== null) {
      // Over the accept rate, leave connections in the kernel backlog rather than refuse them.
      const wait = bucket.delayFor(1, ctx.core.now());
      if (wait > 0) await ctx.core.sleep(wait);
      bucket.take(1, ctx.core.now());
    }
    let admitted;
    try {
      admitted = await listener.accept();
    } catch (e) {
      if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
      // Out of descriptors can be caused from outside (a connection flood): limited.
      ctx.core.metrics.c.acceptErrors++;
      ctx.core.peerLog.warn("accept failed", `accept failed: ${(e as Error).message}`);
      // Out of descriptors and the like: back off instead of spinning.
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    const { conn, remote, ticket } = admitted;
    try {
      (conn as AcceptedConn & { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    } catch {
      // not TCP (tests) or already gone
    }
    handleConnection(conn, remote, ctx)
      .catch((e) => ctx.core.log.error(`connection handler: ${e}`))
      .finally(() => ticket.release());
  }
}

/**
 * Serves one accepted connection: HTTP requests until an upgrade, then the
 * relay protocol. Resolves when the connection is finished. Never rejects
 * for the peer's mistakes.
 */
export async function handleConnection(conn: ByteConn, remote: string, ctx: TransportContext): Promise<void> {
  const core = ctx.core;
  // Metrics-port connections (scrapes) are not relay-port connections: keep them out of those counters.
  const m = ctx.role === "metrics"
    ? { httpConnections: 0, httpConnectionsErrored: 0, httpConnectionsClosed: 0 }
    : core.metrics.c;
  m.httpConnections++;
  const acceptedAt = core.now();
  let timedOut = false;
  const watch = {
    deadline: acceptedAt + core.opts.establishTimeoutMs,
    checkTimers(now: number) {
      if (now >= this.deadline) {
        timedOut = true;
        closeQuietly(conn);
      }
    },
    shutdown() {
      closeQuietly(conn);
    },
  };
  core.watch(watch);
  let buf = new Uint8Array(4096);
  let len = 0;
  let upgraded = false;
  try {
    for (;;) {
      let parsed;
      try {
        parsed = parseRequestHead(buf.subarray(0, len));
      } catch (e) {
        if (!(e instanceof HttpError)) throw e;
        await respondAndClose(conn, errorResponse(e, ctx.role));
        return;
      }
      if (parsed === null) {
        if (len === buf.length) {
          const grown = new Uint8Array(buf.length * 2);
          grown.set(buf);
          buf = grown;
        }
        const n = await conn.read(buf.subarray(len));
        if (n === null) return;
        len += n;
        continue;
      }
      const { head, length } = parsed;
      if (ctx.role === "relay" && isRelayPath(head.path) && head.method === "GET") {
        core.unwatch(watch);
        upgraded = true;
        await upgrade(conn, head, buf.slice(length, len), remote, acceptedAt, ctx);
        return;
      }
      const route = ctx.routes && ctx.role !== "metrics" ? findRoute(ctx.routes, head.path, ctx.role) : undefined;
      let bodyLen: number;
      try {
        bodyLen = requestBodyLength(head);
        if (bodyLen > (route ? route.maxBodyBytes : MAX_SKIPPED_BODY)) {
          throw new HttpError(route ? 413 : 400, "Request body too large");
        }
      } catch (e) {
        if (!(e instanceof HttpError)) throw e;
        await respondAndClose(conn, errorResponse(e, ctx.role));
        return;
      }
      if (route) {
        // Read the whole (bounded) body into the buffer, then answer from the route.
        const need = length + bodyLen;
        if (buf.length < need) {
          const grown = new Uint8Array(need);
          grown.set(buf.subarray(0, len));
          buf = grown;
        }
        while (len < need) {
          const n = await conn.read(buf.subarray(len, need));
          if (n === null) return;
          len += n;
        }
        const res = await answerRoute(route, head, buf.subarray(length, need), remote, ctx);
        const close = wantsClose(head);
        await writeAll(conn, serializeResponse(res, { close }));
        if (close) return;
        buf.copyWithin(0, need, len);
        len -= need;
        if (buf.length > 64 * 1024 && len <= 4096) buf = buf.slice(0, 4096);
        watch.deadline = core.now() + core.opts.establishTimeoutMs;
        continue;
      }
      const res = ctx.role === "relay"
        ? relayEndpoint(head, ctx.health)
        : ctx.role === "metrics" && ctx.endpoint
        ? ctx.endpoint(head)
        : captivePortalEndpoint(head);
      const close = wantsClose(head);
      await writeAll(conn, serializeResponse(res, { close, headOnly: head.method === "HEAD" }));
      if (close) return;
      // Skip the (small) body, then keep the connection for the next request.
      let consumed = length + bodyLen;
      while (len < consumed) {
        const skip = Math.min(consumed - len, buf.length);
        const n = await conn.read(buf.subarray(0, skip));
        if (n === null) return;
        consumed -= n;
      }
      buf.copyWithin(0, consumed, len);
      len -= consumed;
      watch.deadline = core.now() + core.opts.establishTimeoutMs;
    }
  } catch (e) {
    if (!timedOut && !isConnectionGone(e)) core.log.debug(`${remote}: ${(e as Error).message}`);
    m.httpConnectionsErrored++;
  } finally {
    core.unwatch(watch);
    if (timedOut) m.httpConnectionsErrored++;
    if (!upgraded) closeQuietly(conn);
    m.httpConnectionsClosed++;
  }
}

/** Runs a route; its failures become a 500 and a log line, never a dropped connection for others. */
async function answerRoute(
  route: HttpRoute,
  head: RequestHead,
  body: Uint8Array,
  remote: string,
  ctx: TransportContext,
): Promise<HttpResponse> {
  try {
    const req = routeRequest(head, body, ctx.scheme ?? "http");
    return await routeResponse(await route.handle(req, { remote: hostOf(remote) }));
  } catch (e) {
    ctx.core.peerLog.line("error", "route failed", `${route.prefix} handler failed: ${(e as Error).message}`);
    return { status: 500, headers: [["Content-Type", "text/plain; charset=utf-8"]], body: "Internal error" };
  }
}

/** The address part of `host:port` / `[v6]:port`. */
function hostOf(remote: string): string {
  const i = remote.lastIndexOf(":");
  const host = i < 0 ? remote : remote.slice(0, i);
  return host.startsWith("[") ? host.slice(1, -1) : host;
}

function isConnectionGone(e: unknown): boolean {
  return e instanceof Deno.errors.BadResource || e instanceof Deno.errors.ConnectionReset ||
    e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.Interrupted ||
    e instanceof Deno.errors.NotConnected;
}

function errorResponse(e: HttpError, role: ListenerRole): HttpResponse {
  const headers: [string, string][] = [["Content-Type", "text/plain; charset=utf-8"]];
  if (e instanceof WsVersionError) headers.push(["Sec-WebSocket-Version", "13"]);
  if (role === "relay") headers.push(...SECURITY_HEADERS);
  return { status: e.status, headers, body: e.message };
}

async function respondAndClose(conn: ByteConn, res: HttpResponse): Promise<void> {
  try {
    await writeAll(conn, serializeResponse(res, { close: true }));
  } catch {
    // the peer is gone: nothing to tell it
  }
  // Close here: a refused upgrade has already left the establish-timeout watch.
  closeQuietly(conn);
}

/** Answers the `/relay` upgrade and runs the relay protocol until the connection ends. */
async function upgrade(
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
    await respondAndClose(conn, errorResponse(e, "relay"));
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
  const drain = (): Promise<void> | void => {
    for (;;) {
      const type = reader.read();
      if (type < 0 || client.closed) {
        // The read buffer is reused after this: forward what is pending now.
        client.flushRun();
        return;
      }
      const { buf, start, end } = reader;
      if (client.onDatagramFrame(type, buf, start, end)) continue;
      client.flushRun();
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
          if (start < end && t < 64 && client.onDatagramFrame(t, buf, start + 1, end)) continue;
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
