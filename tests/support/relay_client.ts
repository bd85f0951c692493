/**
 * @module
 * A relay client for tests, written from the spec: it speaks all three
 * client kinds over a real socket, with its own codec (`wire.ts`), not the
 * relay's.
 *
 * - `derp`: iroh 0.35 default (`Upgrade: iroh derp http`, 5-byte frames,
 *   self-signed ClientInfo, no reply on success);
 * - `ws035`: iroh 0.35 WebSocket mode (no subprotocol, 1-byte types);
 * - `v1` / `v2`: iroh 1.x (`iroh-relay-v1`/`-v2`, challenge/response).
 *
 * Frames it receives are decoded into upstream-named messages and queued;
 * tests await them with {@link TestRelayClient.next} (bounded by a timeout).
 */

import { ed25519 } from "@noble/curves/ed25519";
import {
  challengeMessage,
  decodeDerp,
  decodeV1,
  type DerpMsg,
  DerpStreamReader,
  encodeDerp,
  encodeDerpWs,
  encodeV1,
  encodeWsFrame,
  type V1Msg,
  WsOpcode,
  WsStreamReader,
} from "./wire.ts";

/** Which client generation and transport to speak. */
export type ClientKind = "derp" | "ws035" | "v1" | "v2";

/** Options of {@link connectClient}. */
export interface ConnectOptions {
  /** 32-byte Ed25519 secret key (default: random). */
  secretKey?: Uint8Array;
  /** Extra request headers (e.g. Authorization). */
  headers?: Record<string, string>;
  /** Request path and query (default `/relay`). */
  path?: string;
  /** Subprotocol header override for v1/v2 (default: `iroh-relay-v2, iroh-relay-v1` or `iroh-relay-v1`). */
  protocols?: string;
  /** Skip the handshake (for tests that send their own first frame). */
  noHandshake?: boolean;
  /** Hostname for TLS (connects with Deno.connectTls when set). */
  tlsHostname?: string;
  /** CA certificates for TLS. */
  caCerts?: string[];
}

/** A message from the relay, in either vocabulary. */
export type ServerMsg = DerpMsg | V1Msg;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Random 32-byte secret key. */
export function randomSecretKey(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(32));
}

/** Public key of a secret key. */
export function publicKeyOf(secret: Uint8Array): Uint8Array {
  return ed25519.getPublicKey(secret);
}

/** A ClientInfo frame payload (0.35) signed by `secret` over postcard `{version}`. */
export function clientInfo(secret: Uint8Array, version = 3): DerpMsg {
  const message = Uint8Array.of(version);
  return { type: "ClientInfo", key: publicKeyOf(secret), signature: ed25519.sign(message, secret), message };
}

/** A 1.x ClientAuth answering `challenge`, signed by `secret`. */
export function clientAuth(secret: Uint8Array, challenge: Uint8Array): V1Msg {
  return {
    type: "ClientAuth",
    publicKey: publicKeyOf(secret),
    signature: ed25519.sign(challengeMessage(challenge), secret),
  };
}

/** Response head of the upgrade. */
export interface UpgradeResponse {
  /** Status code. */
  status: number;
  /** Headers, names lowercased. */
  headers: Map<string, string>;
  /** Body read so far (for non-101 responses with Content-Length). */
  body: string;
}

/** A connected test client; see the module doc. */
export class TestRelayClient {
  /** Client kind. */
  readonly kind: ClientKind;
  /** Our public key. */
  readonly publicKey: Uint8Array;
  /** Secret key. */
  readonly secretKey: Uint8Array;
  /** The upgrade response. */
  response!: UpgradeResponse;
  readonly #conn: Deno.Conn;
  readonly #queue: ServerMsg[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;
  /** Payloads of WebSocket pong frames received (answers to {@link wsFrame} pings). */
  readonly wsPongs: Uint8Array[] = [];
  /** Why reading stopped, once it did. */
  endReason: string | null = null;
  /** Resolves when the connection ends. */
  readonly ended: Promise<void>;
  #endResolve!: () => void;
  #early: Uint8Array = new Uint8Array(0);

  constructor(conn: Deno.Conn, kind: ClientKind, secretKey: Uint8Array) {
    this.#conn = conn;
    this.kind = kind;
    this.secretKey = secretKey;
    this.publicKey = publicKeyOf(secretKey);
    this.ended = new Promise((r) => (this.#endResolve = r));
  }

  /** Sends an upgrade request and reads the response head. */
  async upgrade(host: string, opts: ConnectOptions): Promise<UpgradeResponse> {
    const path = opts.path ?? "/relay";
    let req = `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
    if (this.kind === "derp") {
      req += "Upgrade: iroh derp http\r\n";
    } else {
      req += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
      req += `Sec-WebSocket-Key: ${crypto.getRandomValues(new Uint8Array(16)).toBase64()}\r\n`;
      if (this.kind !== "ws035") {
        req += `Sec-WebSocket-Protocol: ${
          opts.protocols ?? (this.kind === "v2" ? "iroh-relay-v2, iroh-relay-v1" : "iroh-relay-v1")
        }\r\n`;
      }
    }
    for (const [k, v] of Object.entries(opts.headers ?? {})) req += `${k}: ${v}\r\n`;
    req += "\r\n";
    await this.writeRaw(enc.encode(req));
    let buf: Uint8Array = new Uint8Array(0);
    for (;;) {
      const chunk = new Uint8Array(4096);
      const n = await this.#conn.read(chunk);
      if (n === null) throw new Error("Connection closed before the upgrade response");
      buf = concat(buf, chunk.subarray(0, n));
      const end = indexOf(buf, enc.encode("\r\n\r\n"));
      if (end < 0) continue;
      const lines = dec.decode(buf.subarray(0, end)).split("\r\n");
      const status = Number(lines[0]!.split(" ")[1]);
      const headers = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
      }
      let rest: Uint8Array = buf.subarray(end + 4);
      let body = "";
      if (status !== 101) {
        const cl = Number(headers.get("content-length") ?? "0");
        while (rest.length < cl) {
          const n2 = await this.#conn.read(chunk);
          if (n2 === null) break;
          rest = concat(rest, chunk.subarray(0, n2));
        }
        body = dec.decode(rest.subarray(0, cl));
        rest = new Uint8Array(0);
      }
      this.#early = rest.slice();
      this.response = { status, headers, body };
      return this.response;
    }
  }

  /** Starts the background reader. */
  startReading(): void {
    this.#readLoop().catch(() => {});
  }

  async #readLoop(): Promise<void> {
    const ws = this.kind !== "derp";
    const derp = new DerpStreamReader();
    const wsr = new WsStreamReader(2 << 20);
    const onChunk = (c: Uint8Array) => {
      if (ws) {
        wsr.push(c);
        for (let ev = wsr.next(); ev !== null; ev = wsr.next()) {
          if (ev.kind === "message" && ev.binary) this.#deliver(this.#decodeBody(ev.data));
          else if (ev.kind === "pong") this.wsPongs.push(ev.data.slice());
          else if (ev.kind === "close") throw new Error(`websocket close ${ev.code} ${ev.reason}`);
        }
      } else {
        derp.push(c);
        for (let f = derp.next(); f !== null; f = derp.next()) this.#deliver(decodeDerp(f.type, f.payload.slice()));
      }
    };
    try {
      if (this.#early.length) onChunk(this.#early);
      const buf = new Uint8Array(256 * 1024);
      for (;;) {
        if (this.#paused) await this.#paused.promise;
        const n = await this.#conn.read(buf);
        if (n === null) {
          this.endReason = "eof";
          break;
        }
        onChunk(buf.subarray(0, n));
      }
    } catch (e) {
      this.endReason = (e as Error).message;
    } finally {
      this.#closed = true;
      this.#endResolve();
      for (const w of this.#waiters) w();
      this.#waiters = [];
    }
  }

  #decodeBody(data: Uint8Array): ServerMsg {
    const copy = data.slice();
    if (this.kind === "ws035") return decodeDerp(copy[0]!, copy.subarray(1));
    return decodeV1(copy, this.kind === "v2" ? 2 : 1);
  }

  #deliver(m: ServerMsg): void {
    this.#queue.push(m);
    for (const w of this.#waiters) w();
    this.#waiters = [];
  }

  /** True once the connection ended. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Next message from the relay, optionally skipping types in `skip` (e.g. Ping).
   * @throws {Error} if none arrives within `timeoutMs` or the connection ends
   */
  async next(timeoutMs = 5000, skip: string[] = ["Ping"]): Promise<ServerMsg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.#queue.length) {
        const m = this.#queue.shift()!;
        if (m.type === "Ping" && skip.includes("Ping")) {
          await this.sendMsg(
            this.kind === "derp" || this.kind === "ws035"
              ? { type: "Pong", data: (m as { data: Uint8Array }).data }
              : { type: "Pong", data: (m as { data: Uint8Array }).data },
          );
          continue;
        }
        if (skip.includes(m.type)) continue;
        return m;
      }
      if (this.#closed) throw new Error(`Connection ended (${this.endReason}) while waiting for a message`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`No message within ${timeoutMs} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  }

  /** Waits for the next message of type `type`, ignoring others. */
  async nextOf<T extends ServerMsg["type"]>(type: T, timeoutMs = 5000): Promise<Extract<ServerMsg, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.next(Math.max(1, deadline - Date.now()));
      if (m.type === type) return m as Extract<ServerMsg, { type: T }>;
    }
  }

  /** Writes raw bytes. */
  async writeRaw(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) off += await this.#conn.write(b.subarray(off));
  }

  /** Encodes and sends one message in this client's framing. */
  async sendMsg(m: ServerMsg): Promise<void> {
    await this.writeRaw(this.frame(m));
  }

  /** Wire bytes of one message in this client's framing (masked for WebSocket). */
  frame(m: ServerMsg): Uint8Array {
    if (this.kind === "derp") return encodeDerp(m as DerpMsg);
    const body = this.kind === "ws035" ? encodeDerpWs(m as DerpMsg) : encodeV1(m as V1Msg, this.kind === "v2" ? 2 : 1);
    return encodeWsFrame(WsOpcode.Binary, body, crypto.getRandomValues(new Uint8Array(4)));
  }

  /** Wraps an arbitrary message body as one masked WebSocket binary frame. */
  wsFrame(body: Uint8Array, opcode: number = WsOpcode.Binary): Uint8Array {
    return encodeWsFrame(opcode, body, crypto.getRandomValues(new Uint8Array(4)));
  }

  /** Sends a datagram to `dst`. */
  async send(dst: Uint8Array, data: Uint8Array): Promise<void> {
    if (this.kind === "derp" || this.kind === "ws035") {
      await this.sendMsg({ type: "SendPacket", dstKey: dst, packet: data });
    } else await this.sendMsg({ type: "ClientToRelayDatagram", dstKey: dst, ecn: 0, contents: data });
  }

  /** Waits for the next datagram; returns source and payload. */
  async recv(timeoutMs = 5000): Promise<{ src: Uint8Array; data: Uint8Array }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.next(Math.max(1, deadline - Date.now()));
      if (m.type === "RecvPacket") return { src: m.srcKey, data: m.packet };
      if (m.type === "RelayToClientDatagram" || m.type === "RelayToClientDatagramBatch") {
        return { src: m.srcKey, data: m.contents };
      }
    }
  }

  /** Sends a Ping and waits for the matching Pong. */
  async ping(timeoutMs = 5000): Promise<void> {
    const data = crypto.getRandomValues(new Uint8Array(8));
    await this.sendMsg({ type: "Ping", data });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.next(Math.max(1, deadline - Date.now()));
      if (m.type === "Pong" && m.data.every((b, i) => b === data[i])) return;
    }
  }

  #paused: PromiseWithResolvers<void> | null = null;

  /**
   * Stops reading from the socket (after any read already pending), so the
   * relay's writes back up as for a peer that stopped reading.
   */
  pause(): void {
    this.#paused ??= Promise.withResolvers<void>();
  }

  /** Resumes reading after {@link pause}. */
  resume(): void {
    this.#paused?.resolve();
    this.#paused = null;
  }

  /** Closes the socket. */
  close(): void {
    this.resume();
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Messages queued and not yet taken. */
  get pending(): readonly ServerMsg[] {
    return this.#queue;
  }
}

/**
 * Connects, upgrades and (unless `noHandshake`) authenticates.
 * For 1.x it waits for ServerConfirmsAuth; for 0.35 it sends ClientInfo
 * and returns at once, as the real client does.
 */
export async function connectClient(
  port: number,
  kind: ClientKind,
  opts: ConnectOptions = {},
): Promise<TestRelayClient> {
  // TLS: TCP to 127.0.0.1, then the handshake for `tlsHostname` (SNI and verification), which need not resolve.
  const conn = opts.tlsHostname
    ? await Deno.startTls(await Deno.connect({ hostname: "127.0.0.1", port }), {
      hostname: opts.tlsHostname,
      ...(opts.caCerts ? { caCerts: opts.caCerts } : {}),
    })
    : await Deno.connect({ hostname: "127.0.0.1", port });
  // Like the iroh clients (spec §8): no Nagle delay on small frames.
  if (!opts.tlsHostname) (conn as Deno.TcpConn).setNoDelay(true);
  const c = new TestRelayClient(conn, kind, opts.secretKey ?? randomSecretKey());
  const res = await c.upgrade(`127.0.0.1:${port}`, opts);
  if (res.status !== 101) {
    c.close();
    throw new Error(`Upgrade refused: ${res.status} ${res.body}`);
  }
  c.startReading();
  if (opts.noHandshake) return c;
  if (kind === "derp" || kind === "ws035") {
    await c.sendMsg(clientInfo(c.secretKey));
    return c;
  }
  const ch = await c.next(5000, []);
  if (ch.type !== "ServerChallenge") throw new Error(`Expected ServerChallenge, got ${ch.type}`);
  await c.sendMsg(clientAuth(c.secretKey, ch.challenge));
  const verdict = await c.next(5000, []);
  if (verdict.type !== "ServerConfirmsAuth") {
    c.close();
    throw new Error(`Auth refused: ${verdict.type === "ServerDeniesAuth" ? verdict.reason : verdict.type}`);
  }
  return c;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function indexOf(h: Uint8Array, n: Uint8Array): number {
  outer: for (let i = 0; i + n.length <= h.length; i++) {
    for (let j = 0; j < n.length; j++) if (h[i + j] !== n[j]) continue outer;
    return i;
  }
  return -1;
}
