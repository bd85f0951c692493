/**
 * @module
 * An IMAP connection from a chosen loopback source address (node:net's
 * `localAddress`; `Deno.connect` cannot bind one), reading line by line.
 * Tests and the login-contention bench use it where a per-source limit is
 * what protects the legitimate client from the attacking one.
 */

import net from "node:net";

/** A line-reading IMAP connection. */
export class SourceImapClient {
  /** The socket. */
  readonly sock: net.Socket;
  #buf = "";
  #waiters: (() => void)[] = [];
  /** True once the connection closed or failed. */
  closed = false;

  /** Connects to 127.0.0.1:`port` from `localAddress` (e.g. 127.0.0.2). */
  constructor(port: number, localAddress: string) {
    this.sock = net.connect({ host: "127.0.0.1", port, localAddress });
    this.sock.setEncoding("latin1");
    this.sock.on("data", (d: string) => {
      this.#buf += d;
      this.#wake();
    });
    const end = () => {
      this.closed = true;
      this.#wake();
    };
    this.sock.on("close", end);
    this.sock.on("error", end);
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Next line without CRLF, or null at close. */
  async line(): Promise<string | null> {
    for (;;) {
      const i = this.#buf.indexOf("\n");
      if (i >= 0) {
        const l = this.#buf.slice(0, i).replace(/\r$/, "");
        this.#buf = this.#buf.slice(i + 1);
        return l;
      }
      if (this.closed) return null;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /** Sends `tag text` and returns the tagged reply line, or null at close. */
  async command(tag: string, text: string): Promise<string | null> {
    this.sock.write(`${tag} ${text}\r\n`);
    for (;;) {
      const l = await this.line();
      if (l === null || l.startsWith(`${tag} `)) return l;
    }
  }

  /** Closes at once. */
  close(): void {
    this.sock.destroy();
  }
}
