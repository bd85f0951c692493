/**
 * @module
 * Connecting to the proxy's upstream IMAP server (`[imap.upstream]`).
 *
 * - `tls = false`: plain TCP (`Deno.connect`).
 * - `tls = true`, `verify_certificate = true` (default): `Deno.connectTls`
 *   with the system/webpki roots plus `ca_file`. With `server_name`, we dial
 *   `host` and run `Deno.startTls` with `hostname = server_name`, so SNI and
 *   the certificate check use that name.
 * - `tls = true`, `verify_certificate = false`: Deno's own TLS API has no
 *   per-connection switch to skip chain verification (only the process-wide
 *   `--unsafely-ignore-certificate-errors` flag, and
 *   `unsafelyDisableHostnameVerification`, which still checks the chain). The
 *   `node:tls` compatibility layer honours `rejectUnauthorized: false`
 *   (checked on Deno 2.9.6), so that one case goes through `node:tls`,
 *   adapted to {@link ByteConn}.
 *
 * The handshake runs here, so a bad certificate fails the connect rather
 * than the first read.
 */

import * as tls from "node:tls";
import type { ImapUpstream } from "../config/mod.ts";
import type { ByteConn } from "./conn.ts";

/** Upstream settings plus the CA file's contents, read once at start. */
export interface UpstreamTarget {
  /** `[imap.upstream]`. */
  upstream: ImapUpstream;
  /** PEM text of `ca_file`, if configured. */
  caCert?: string;
}

/** Bytes buffered from a node:tls socket before it is paused (backpressure). */
const NODE_HIGH_WATER = 256 * 1024;

/**
 * Opens a connection to the upstream.
 * @throws {Error} connection refused, TLS or certificate failure
 */
export async function connectUpstream(t: UpstreamTarget): Promise<ByteConn> {
  const up = t.upstream;
  if (!up.tls) return await Deno.connect({ hostname: up.host, port: up.port });
  const caCerts = t.caCert !== undefined ? [t.caCert] : undefined;
  if (!up.verifyCertificate) return await connectNodeTls(up, t.caCert);
  let conn: Deno.TlsConn;
  if (up.serverName !== undefined && up.serverName !== up.host) {
    const tcp = await Deno.connect({ hostname: up.host, port: up.port });
    try {
      conn = await Deno.startTls(tcp, { hostname: up.serverName, ...(caCerts ? { caCerts } : {}) });
    } catch (e) {
      tcp.close();
      throw e;
    }
  } else {
    conn = await Deno.connectTls({ hostname: up.host, port: up.port, ...(caCerts ? { caCerts } : {}) });
  }
  try {
    await conn.handshake();
  } catch (e) {
    try {
      conn.close();
    } catch {
      // already closed
    }
    throw e;
  }
  return conn;
}

/** `node:tls` with certificate checks off, as a {@link ByteConn}. */
function connectNodeTls(up: ImapUpstream, ca: string | undefined): Promise<ByteConn> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: up.host,
      port: up.port,
      servername: up.serverName ?? (/^[\d.]+$|:/.test(up.host) ? undefined : up.host),
      rejectUnauthorized: false,
      ...(ca !== undefined ? { ca } : {}),
    });
    const onError = (e: Error) => reject(e);
    sock.once("error", onError);
    sock.once("secureConnect", () => {
      sock.off("error", onError);
      resolve(new NodeTlsConn(sock));
    });
  });
}

/** Adapts a node:tls socket to {@link ByteConn} with pause/resume backpressure. */
class NodeTlsConn implements ByteConn {
  readonly #sock: tls.TLSSocket;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;

  constructor(sock: tls.TLSSocket) {
    this.#sock = sock;
    sock.on("data", (d: Uint8Array) => {
      this.#chunks.push(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      this.#buffered += d.byteLength;
      if (this.#buffered > NODE_HIGH_WATER) sock.pause();
      this.#notify();
    });
    sock.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    sock.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
    sock.on("error", (e: Error) => {
      this.#error = e;
      this.#notify();
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((r) => this.#wake = r);
    }
    const c = this.#chunks[0]!;
    const n = Math.min(p.length, c.length);
    p.set(c.subarray(0, n));
    if (n === c.length) this.#chunks.shift();
    else this.#chunks[0] = c.subarray(n);
    this.#buffered -= n;
    if (this.#buffered <= NODE_HIGH_WATER / 2 && this.#sock.isPaused()) this.#sock.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.#error) return reject(this.#error);
      this.#sock.write(p.slice(), (err?: Error | null) => err ? reject(err) : resolve(p.length));
    });
  }

  close(): void {
    this.#ended = true;
    this.#sock.destroy();
    this.#notify();
  }
}
