/**
 * @module
 * Attacker sockets with a chosen loopback source address. `Deno.connect`
 * cannot bind the local side, `node:net` under Deno can
 * (`connect({ localAddress })`), so every attack connection goes through
 * here: the relay and IMAP listeners then see 127.0.0.2, 127.0.0.3, … while
 * the legitimate probes come from 127.0.0.1, which is what per-source limits
 * are about.
 *
 * An {@link AttackSocket} reads (so it notices a FIN) until told to stop
 * ({@link AttackSocket.stopReading}): a paused socket leaves the server's
 * replies in the kernel buffers, the "client that never reads" of the
 * ping-flood finding. It records whether the server ended the connection
 * (FIN or reset), the thing the tests assert.
 */

import net from "node:net";

/** First attacker source address; legitimate probes use 127.0.0.1. */
export const ATTACKER = "127.0.0.2";

/**
 * `n` distinct attacker source addresses, 127.0.0.2 upwards (skipping the
 * first `offset`), for attacks spread over sources so that each stays under
 * the per-source caps and only the protection under test can stop it.
 */
export function attackerSources(n: number, offset = 0): string[] {
  return Array.from({ length: n }, (_, i) => {
    const k = i + offset + 2;
    return `127.0.${Math.floor(k / 250)}.${k % 250}`;
  });
}

/** Received bytes kept per socket (the rest is read and dropped). */
const MAX_KEPT = 1 << 20;

/** One attacker TCP connection; it reads (and keeps up to 1 MiB) until told to stop. */
export class AttackSocket {
  readonly sock: net.Socket;
  #peerClosed = false;
  #reading = true;
  /** We closed it ourselves. */
  closedByUs = false;
  /** Bytes read from the server (only while reading). */
  received: Uint8Array = new Uint8Array(0);
  #closed: Promise<void>;
  #wake: (() => void)[] = [];

  private constructor(sock: net.Socket) {
    this.sock = sock;
    this.#closed = new Promise((resolve) => {
      const done = () => {
        if (!this.closedByUs) this.#peerClosed = true;
        for (const w of this.#wake.splice(0)) w();
        resolve();
      };
      sock.once("close", done);
      sock.once("end", done);
    });
    sock.on("error", () => {
      // A reset (or EPIPE after one) on a socket we did not destroy: the server cut us off.
      if (!this.closedByUs) this.#peerClosed = true;
    });
    sock.on("data", (chunk: Uint8Array) => {
      if (this.received.length > MAX_KEPT) return;
      const next = new Uint8Array(this.received.length + chunk.length);
      next.set(this.received);
      next.set(chunk, this.received.length);
      this.received = next;
      for (const w of this.#wake.splice(0)) w();
    });
  }

  /**
   * The server closed (FIN) or reset the connection. A paused socket sees a
   * FIN only when it reads, but one the server reset or closed under our
   * writes ends up destroyed without us having done it.
   */
  get closedByPeer(): boolean {
    return this.#peerClosed || (this.sock.destroyed && !this.closedByUs);
  }

  /** Stops reading: the server's bytes stay in the kernel buffers (a client that never reads). */
  stopReading(): void {
    this.#reading = false;
    this.sock.pause();
  }

  /**
   * Connects from `source` to `127.0.0.1:port`; rejects on error or after
   * `timeoutMs` (a server that stops accepting leaves us in the backlog).
   */
  static connect(port: number, source = ATTACKER, timeoutMs = 5000): Promise<AttackSocket> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: "127.0.0.1", port, localAddress: source });
      sock.setNoDelay(true);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect from ${source} timed out`));
      }, timeoutMs);
      sock.once("connect", () => {
        clearTimeout(timer);
        resolve(new AttackSocket(sock));
      });
      sock.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  /** Resolves when the connection is closed by either side. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /** True while neither side closed. */
  get open(): boolean {
    return !this.closedByPeer && !this.closedByUs && !this.sock.destroyed;
  }

  /** Writes; resolves when the bytes left our user-space buffer (or the socket died). */
  write(data: Uint8Array | string): Promise<boolean> {
    if (!this.open) return Promise.resolve(false);
    // The callback fires once flushed to the kernel; a socket that dies first may never call it.
    const written = new Promise<boolean>((resolve) => this.sock.write(data, (err) => resolve(!err)));
    return Promise.race([written, this.#closed.then(() => false)]);
  }

  /** Bytes queued in user space (not yet in the kernel): the attacker's own back-pressure. */
  get pendingBytes(): number {
    return this.sock.writableLength;
  }

  /**
   * Reads until `pred(received)` holds, the peer closes, or `timeoutMs`
   * (a socket that stopped reading reads for this and stops again). Returns
   * whether `pred` held.
   */
  async readUntil(pred: (b: Uint8Array) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    if (!this.#reading) this.sock.resume();
    try {
      while (!pred(this.received)) {
        if (!this.open || Date.now() >= deadline) return pred(this.received);
        await new Promise<void>((r) => {
          const t = setTimeout(r, deadline - Date.now());
          this.#wake.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
      return true;
    } finally {
      if (!this.#reading) this.sock.pause();
    }
  }

  /** Text received so far (latin1, for protocol lines). */
  text(): string {
    return new TextDecoder("latin1").decode(this.received);
  }

  /** Closes our side and frees the socket. */
  destroy(): void {
    if (!this.closedByPeer) this.closedByUs = true;
    this.sock.destroy();
  }
}

/**
 * Opens up to `n` connections from `sources` (round robin), `concurrency` at
 * a time; failures (refused, reset, timeout) are counted, not thrown.
 */
export async function connectMany(
  port: number,
  n: number,
  sources: string[],
  opts: { concurrency?: number; timeoutMs?: number; deadline?: number } = {},
): Promise<{ sockets: AttackSocket[]; failed: number }> {
  const sockets: AttackSocket[] = [];
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < n && Date.now() < (opts.deadline ?? Infinity)) {
      const i = next++;
      try {
        sockets.push(await AttackSocket.connect(port, sources[i % sources.length]!, opts.timeoutMs ?? 5000));
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 64 }, worker));
  return { sockets, failed };
}

/** Counts sockets the server closed. */
export function closedByServer(sockets: AttackSocket[]): number {
  return sockets.filter((s) => s.closedByPeer).length;
}

/** Destroys every socket. */
export function destroyAll(sockets: AttackSocket[]): void {
  for (const s of sockets) s.destroy();
}
