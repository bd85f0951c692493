/**
 * @module
 * A `node:net`/`node:tls` socket adapted to the small read/write/close
 * surface the listeners' connection handlers use (the surface `Deno.Conn`
 * has), with pause/resume backpressure: at most {@link HIGH_WATER_BYTES}
 * bytes that the peer sent wait here before the socket stops reading.
 *
 * Why node sockets: see `tls_listener.ts` (a Deno `TlsConn` closed before
 * its handshake finishes keeps its file descriptor).
 */

import type * as net from "node:net";

/** The socket surface connection handlers need; `Deno.Conn` has it too. */
export interface AcceptedConn {
  /** Reads into `p`; null at EOF. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; returns how much. */
  write(p: Uint8Array): Promise<number>;
  /** Closes both directions. */
  close(): void;
  /** Peer address. */
  readonly remoteAddr: Deno.Addr;
  /** Our address. */
  readonly localAddr: Deno.Addr;
}

/** Bytes buffered before the socket is paused. */
export const HIGH_WATER_BYTES = 256 * 1024;

/** A Deno-style error for a failed node socket, so callers' "connection gone" checks still match. */
function asDenoError(e: Error & { code?: string }): Error {
  switch (e.code) {
    case "EPIPE":
      return new Deno.errors.BrokenPipe(e.message);
    case "ECONNRESET":
      return new Deno.errors.ConnectionReset(e.message);
    default:
      return new Deno.errors.BadResource(e.message);
  }
}

function netAddr(address: string | undefined, port: number | undefined): Deno.NetAddr {
  return { transport: "tcp", hostname: address ?? "", port: port ?? 0 };
}

/** {@link AcceptedConn} over a node socket (plain or TLS). */
export class NodeSocketConn implements AcceptedConn {
  readonly #sock: net.Socket;
  readonly #onClose: () => void;
  #chunks: Uint8Array[] = [];
  #head = 0;
  #buffered = 0;
  #ended = false;
  #closed = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  /** Peer address. */
  readonly remoteAddr: Deno.NetAddr;
  /** Our address. */
  readonly localAddr: Deno.NetAddr;

  /**
   * @param sock a connected socket (a TLS socket after its handshake)
   * @param raw the TCP socket under it, for addresses (default `sock`)
   * @param onClose called once when the socket is gone, however it ended
   */
  constructor(sock: net.Socket, raw: net.Socket = sock, onClose: () => void = () => {}) {
    this.#sock = sock;
    this.#onClose = onClose;
    this.remoteAddr = netAddr(raw.remoteAddress, raw.remotePort);
    this.localAddr = netAddr(raw.localAddress, raw.localPort);
    sock.on("data", (d: Uint8Array) => {
      this.#chunks.push(d);
      this.#buffered += d.byteLength;
      if (this.#buffered > HIGH_WATER_BYTES) sock.pause();
      this.#notify();
    });
    sock.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    sock.on("error", (e: Error) => {
      this.#error ??= asDenoError(e);
      this.#notify();
    });
    sock.on("close", () => {
      this.#ended = true;
      this.#gone();
      this.#notify();
    });
    if (sock.destroyed) this.#gone();
  }

  #gone(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#onClose();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Reads what has arrived into `p` (several chunks at once if they fit); null at EOF. */
  async read(p: Uint8Array): Promise<number | null> {
    while (this.#head === this.#chunks.length) {
      if (this.#error) throw this.#error;
      if (this.#ended || this.#closed) return null;
      await new Promise<void>((r) => this.#wake = r);
    }
    let n = 0;
    const chunks = this.#chunks;
    while (n < p.length && this.#head < chunks.length) {
      const c = chunks[this.#head]!;
      const k = Math.min(p.length - n, c.length);
      p.set(k === c.length ? c : c.subarray(0, k), n);
      n += k;
      if (k === c.length) chunks[this.#head++] = EMPTY;
      else chunks[this.#head] = c.subarray(k);
    }
    if (this.#head === chunks.length) {
      chunks.length = 0;
      this.#head = 0;
    }
    this.#buffered -= n;
    if (this.#buffered <= HIGH_WATER_BYTES / 2 && this.#sock.isPaused() && !this.#closed) this.#sock.resume();
    return n;
  }

  /**
   * Writes all of `p`. Resolves once the socket has taken the bytes (the
   * caller may then reuse `p`); rejects if the connection is gone.
   */
  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.#error) return reject(this.#error);
      if (this.#closed || this.#sock.destroyed) return reject(new Deno.errors.BadResource("Connection closed"));
      this.#sock.write(p, (err?: Error | null) => err ? reject(asDenoError(err)) : resolve(p.length));
    });
  }

  /** Closes the connection at once (the descriptor is released). Idempotent. */
  close(): void {
    this.#ended = true;
    this.#sock.destroy();
    this.#gone();
    this.#notify();
  }

  /** Disables Nagle's algorithm (as `Deno.TcpConn.setNoDelay`). */
  setNoDelay(on = true): void {
    this.#sock.setNoDelay(on);
  }
}

const EMPTY = new Uint8Array(0);
