/**
 * @module
 * The legitimate side of the soak: a tiny iroh 0.35 derp client written from
 * the spec (§1.2 upgrade, §2.2 frames, §3.1 ClientInfo) over `Deno.connect`
 * from 127.0.0.1, and a pair of them exchanging datagrams through the relay,
 * each datagram checked for arrival within a bound.
 */

import { cat, clientInfoPayload, DERP, derpFrame, headEnd, newIdentity, upgradeRequest } from "./wire.ts";

/** A connected, registered 0.35 derp client. */
export class LegitDerpClient {
  readonly key: Uint8Array;
  readonly #conn: Deno.Conn;
  #buf: Uint8Array = new Uint8Array(0);
  /** Datagram payloads received, by their first 8 bytes (a sequence number). */
  readonly #waiting = new Map<bigint, () => void>();
  closed = false;

  private constructor(conn: Deno.Conn, key: Uint8Array) {
    this.#conn = conn;
    this.key = key;
  }

  /** Connects, upgrades and registers (ClientInfo; the server sends nothing back on success). */
  static async connect(port: number): Promise<LegitDerpClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const id = newIdentity();
    const c = new LegitDerpClient(conn, id.key);
    await c.#write(new TextEncoder().encode(upgradeRequest("derp")));
    const chunk = new Uint8Array(64 * 1024);
    while (headEnd(c.#buf) < 0) {
      const n = await conn.read(chunk);
      if (n === null) throw new Error("relay closed during the upgrade");
      c.#buf = cat(c.#buf, chunk.subarray(0, n));
    }
    const head = new TextDecoder().decode(c.#buf.subarray(0, headEnd(c.#buf)));
    if (!head.startsWith("HTTP/1.1 101")) throw new Error(`upgrade refused: ${head.split("\r\n")[0]}`);
    c.#buf = c.#buf.subarray(headEnd(c.#buf));
    await c.#write(derpFrame(DERP.clientInfo, clientInfoPayload(id.secret)));
    c.#readLoop();
    return c;
  }

  async #write(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) off += await this.#conn.write(b.subarray(off));
  }

  async #readLoop(): Promise<void> {
    const chunk = new Uint8Array(256 * 1024);
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        this.#buf = cat(this.#buf, chunk.subarray(0, n));
        while (this.#buf.length >= 5) {
          const len = new DataView(this.#buf.buffer, this.#buf.byteOffset).getUint32(1);
          if (this.#buf.length < 5 + len) break;
          const type = this.#buf[0];
          const payload = this.#buf.subarray(5, 5 + len);
          this.#buf = this.#buf.subarray(5 + len);
          if (type === DERP.recvPacket && payload.length >= 40) {
            const seq = new DataView(payload.buffer, payload.byteOffset + 32).getBigUint64(0);
            this.#waiting.get(seq)?.();
            this.#waiting.delete(seq);
          }
        }
      }
    } catch {
      // reset
    } finally {
      this.closed = true;
    }
  }

  /**
   * Sends datagram `seq` (plus `size` bytes) to `to` and resolves with the
   * time until `to` received it; rejects after `timeoutMs`.
   */
  async roundTrip(to: LegitDerpClient, seq: bigint, size: number, timeoutMs: number): Promise<number> {
    const t0 = performance.now();
    const payload = new Uint8Array(8 + size);
    new DataView(payload.buffer).setBigUint64(0, seq);
    const arrived = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        to.#waiting.delete(seq);
        reject(new Error(`datagram ${seq} not delivered in ${timeoutMs} ms`));
      }, timeoutMs);
      to.#waiting.set(seq, () => {
        clearTimeout(t);
        resolve();
      });
    });
    await this.#write(derpFrame(DERP.sendPacket, cat(to.key, payload)));
    await arrived;
    return performance.now() - t0;
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // closed
    }
  }
}
