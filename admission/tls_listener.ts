/**
 * @module
 * A TLS listener whose handshakes have a deadline after which the
 * connection and its file descriptor are really gone, and whose certificate
 * can be swapped without rebinding.
 *
 * Why not `Deno.listenTls`: in Deno 2.9.6 a `TlsConn` closed before its
 * handshake finished keeps the socket open until the peer goes away (400
 * silent connects or ClientHellos-then-silence held 400 descriptors after
 * `close()`, measured with `/proc/self/fd`); `node:tls`'s own
 * `createServer({ handshakeTimeout })` under Deno fires the timeout but
 * keeps the descriptors too. What does release them: a `node:net` server,
 * `new tls.TLSSocket(socket, { isServer: true })` over each accepted socket,
 * and `destroy()` at our own deadline. So that is what this file does.
 *
 * Admission happens on the raw TCP connection, before any TLS work, so a
 * flood of handshakes from one source is refused by the per-source limit
 * instead of costing a handshake each. The certificate lives in a holder
 * read at every new handshake ({@link TlsAcceptor.setCertificate}).
 */

import * as net from "node:net";
import * as tls from "node:tls";
import type { Ticket } from "./gate.ts";
import { type Acceptor, type AdmissionOptions, type Admitted, formatRemote } from "./listener.ts";
import { NodeSocketConn } from "./node_conn.ts";

/** Admitted connections waiting for `accept()` beyond this are closed (the accept loop is stuck). */
const MAX_READY = 1024;

/** Options of {@link TlsAcceptor.listen}. */
export interface TlsListenOptions extends Omit<AdmissionOptions, "onRefused"> {
  /** Address to bind. */
  hostname: string;
  /** Port to bind (0: any). */
  port: number;
  /** PEM certificate chain. */
  cert: string;
  /** PEM private key. */
  key: string;
  /** Handshake deadline, ms. */
  handshakeTimeoutMs: number;
  /** Told about accept failures (out of descriptors and the like); the listener keeps listening. */
  onAcceptError?: (e: Error) => void;
}

/**
 * Checks that `cert` and `key` form a usable pair. `tls.createSecureContext`
 * under Deno accepts anything and fails only at the first handshake, so the
 * pair is tried on a throwaway `Deno.listenTls` bound to a loopback port.
 * @throws {Error} unreadable PEM, no certificate, or a key that does not match
 */
export function checkCertificate(cert: string, key: string): void {
  Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }).close();
}

/** See the module doc. */
export class TlsAcceptor implements Acceptor<NodeSocketConn> {
  readonly #server: net.Server;
  readonly #opts: TlsListenOptions;
  readonly #now: () => number;
  #context: tls.SecureContext;
  #addr: Deno.NetAddr = { transport: "tcp", hostname: "", port: 0 };
  #closed = false;
  readonly #ready: Admitted<NodeSocketConn>[] = [];
  readonly #waiters: { resolve: (a: Admitted<NodeSocketConn>) => void; reject: (e: Error) => void }[] = [];
  /** Handshakes in progress, so close() can end them. */
  readonly #pending = new Set<net.Socket>();

  private constructor(opts: TlsListenOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
    this.#context = tls.createSecureContext({ cert: opts.cert, key: opts.key });
    this.#server = net.createServer({ noDelay: true }, (sock) => this.#onConnection(sock));
  }

  /**
   * Binds and starts accepting.
   * @throws {Error} a bad certificate/key pair, or the address cannot be bound
   */
  static async listen(opts: TlsListenOptions): Promise<TlsAcceptor> {
    checkCertificate(opts.cert, opts.key);
    const a = new TlsAcceptor(opts);
    await new Promise<void>((resolve, reject) => {
      a.#server.once("error", reject);
      a.#server.listen({ host: opts.hostname, port: opts.port, backlog: 511 }, () => {
        a.#server.off("error", reject);
        resolve();
      });
    });
    // Accept errors (EMFILE and the like) are transient; the server keeps listening.
    a.#server.on("error", (e: Error) => opts.onAcceptError?.(e));
    const info = a.#server.address() as net.AddressInfo;
    a.#addr = { transport: "tcp", hostname: info.address, port: info.port };
    return a;
  }

  /** Bound address. */
  get addr(): Deno.NetAddr {
    return this.#addr;
  }

  /** Handshakes in progress. */
  get handshaking(): number {
    return this.#pending.size;
  }

  /**
   * Serves new handshakes with this certificate; connections already open
   * keep theirs.
   * @throws {Error} the pair is unusable (the current certificate stays)
   */
  setCertificate(cert: string, key: string): void {
    checkCertificate(cert, key);
    this.#context = tls.createSecureContext({ cert, key });
  }

  #onConnection(sock: net.Socket): void {
    const opts = this.#opts;
    if (this.#closed || sock.remoteAddress === undefined) {
      sock.destroy();
      return;
    }
    const t = opts.gate.admit(sock.remoteAddress, this.#now());
    if (typeof t === "string") {
      opts.metrics.refused(opts.listener, t);
      sock.destroy();
      return;
    }
    sock.on("error", () => {});
    const remote = formatRemote({ transport: "tcp", hostname: sock.remoteAddress, port: sock.remotePort ?? 0 });
    const secure = new tls.TLSSocket(sock, { isServer: true, secureContext: this.#context });
    this.#pending.add(sock);
    let done = false;
    const fail = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.#pending.delete(sock);
      secure.destroy();
      sock.destroy();
      t.release();
    };
    const timer = setTimeout(() => {
      if (done) return;
      opts.metrics.tlsHandshakeTimeout(opts.listener);
      fail();
    }, opts.handshakeTimeoutMs);
    secure.on("error", fail);
    secure.on("close", fail);
    secure.once("secure", () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.#pending.delete(sock);
      secure.off("error", fail);
      secure.off("close", fail);
      const conn = new NodeSocketConn(secure, sock, () => {
        sock.destroy();
        t.release();
      });
      this.#deliver({ conn, remote, ticket: t as Ticket });
    });
  }

  #deliver(a: Admitted<NodeSocketConn>): void {
    const w = this.#waiters.shift();
    if (w) return w.resolve(a);
    if (this.#closed || this.#ready.length >= MAX_READY) {
      a.conn.close();
      return;
    }
    this.#ready.push(a);
  }

  /** Next connection whose handshake finished. */
  accept(): Promise<Admitted<NodeSocketConn>> {
    const a = this.#ready.shift();
    if (a) return Promise.resolve(a);
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("Listener has been closed"));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Stops listening, ends handshakes in progress and connections not yet accepted. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const s of [...this.#pending]) s.destroy();
    for (const a of this.#ready.splice(0)) a.conn.close();
    for (const w of this.#waiters.splice(0)) w.reject(new Deno.errors.BadResource("Listener has been closed"));
  }
}
