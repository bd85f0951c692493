/**
 * @module
 * A small IMAP client for tests: raw bytes out, whole responses in
 * (literals included, byte-exact), every read bounded by a timeout so a
 * broken server fails the test instead of hanging it.
 */

/** Options of {@link TestImapClient.connect}. */
export interface ImapConnectOptions {
  /** Port. */
  port: number;
  /** Host (default 127.0.0.1). */
  hostname?: string;
  /** Connect with implicit TLS, trusting these CA certificates. */
  tls?: { caCerts: string[] };
  /** Per-read timeout, ms (default 5000). */
  timeoutMs?: number;
}

/** One server response: its raw bytes and a text view (literal bytes decoded as UTF-8). */
export interface ImapResponse {
  /** Exact bytes, CRLFs and literals included. */
  bytes: Uint8Array;
  /** The same as text. */
  text: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Raised when the server sends nothing in time. */
export class ReadTimeout extends Error {
  constructor(ms: number) {
    super(`No data from the server within ${ms} ms`);
    this.name = "ReadTimeout";
  }
}

/** A line-oriented IMAP test client. */
export class TestImapClient {
  readonly conn: Deno.Conn;
  readonly timeoutMs: number;
  #buf = new Uint8Array(0);
  #eof = false;
  #pending: Promise<number | null> | null = null;
  #chunk = new Uint8Array(64 * 1024);

  private constructor(conn: Deno.Conn, timeoutMs: number) {
    this.conn = conn;
    this.timeoutMs = timeoutMs;
  }

  /** Connects. */
  static async connect(opts: ImapConnectOptions): Promise<TestImapClient> {
    const hostname = opts.hostname ?? "127.0.0.1";
    const conn = opts.tls
      ? await Deno.connectTls({ hostname, port: opts.port, caCerts: opts.tls.caCerts })
      : await Deno.connect({ hostname, port: opts.port });
    return new TestImapClient(conn, opts.timeoutMs ?? 5000);
  }

  /** Sends text or bytes as they are. */
  async send(data: string | Uint8Array): Promise<void> {
    const b = typeof data === "string" ? enc.encode(data) : data;
    let off = 0;
    while (off < b.length) off += await this.conn.write(b.subarray(off));
  }

  /** Reads more bytes into the buffer; false at EOF. */
  async #fill(timeoutMs: number): Promise<boolean> {
    if (this.#eof) return false;
    // A read that timed out earlier is still pending: reuse it rather than start a second one.
    this.#pending ??= this.conn.read(this.#chunk).catch(() => null);
    let id: ReturnType<typeof setTimeout> | undefined;
    const timer = new Promise<"timeout">((r) => id = setTimeout(() => r("timeout"), timeoutMs));
    const n = await Promise.race([this.#pending, timer]);
    clearTimeout(id);
    if (n === "timeout") throw new ReadTimeout(timeoutMs);
    this.#pending = null;
    if (n === null) {
      this.#eof = true;
      return false;
    }
    const b = new Uint8Array(this.#buf.length + n);
    b.set(this.#buf);
    b.set(this.#chunk.subarray(0, n), this.#buf.length);
    this.#buf = b;
    return true;
  }

  /** Next line including CRLF, or null at EOF. */
  async #line(timeoutMs: number): Promise<Uint8Array | null> {
    for (;;) {
      const lf = this.#buf.indexOf(0x0a);
      if (lf >= 0) {
        const line = this.#buf.slice(0, lf + 1);
        this.#buf = this.#buf.slice(lf + 1);
        return line;
      }
      if (!(await this.#fill(timeoutMs))) return null;
    }
  }

  async #bytes(n: number, timeoutMs: number): Promise<Uint8Array | null> {
    while (this.#buf.length < n) if (!(await this.#fill(timeoutMs))) return null;
    const b = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return b;
  }

  /** Next whole response (following `{n}` literals), or null at EOF. */
  async response(timeoutMs = this.timeoutMs): Promise<ImapResponse | null> {
    const parts: Uint8Array[] = [];
    for (;;) {
      const line = await this.#line(timeoutMs);
      if (line === null) {
        if (parts.length === 0) return null;
        throw new Error("EOF inside a response");
      }
      parts.push(line);
      const m = /\{(\d+)\+?\}\r?\n$/.exec(dec.decode(line.subarray(Math.max(0, line.length - 24))));
      if (!m) break;
      const lit = await this.#bytes(Number(m[1]), timeoutMs);
      if (lit === null) throw new Error("EOF inside a literal");
      parts.push(lit);
    }
    let len = 0;
    for (const p of parts) len += p.length;
    const bytes = new Uint8Array(len);
    let off = 0;
    for (const p of parts) {
      bytes.set(p, off);
      off += p.length;
    }
    return { bytes, text: dec.decode(bytes) };
  }

  /** Reads responses until the tagged one for `tag`; returns all of them, tagged last. */
  async until(tag: string, timeoutMs = this.timeoutMs): Promise<ImapResponse[]> {
    const out: ImapResponse[] = [];
    for (let i = 0; i < 100_000; i++) {
      const r = await this.response(timeoutMs);
      if (r === null) {
        throw new Error(`EOF before ${tag}'s tagged reply; got ${JSON.stringify(out.map((x) => x.text))}`);
      }
      out.push(r);
      if (r.text.startsWith(`${tag} `)) return out;
    }
    throw new Error("Too many responses");
  }

  /** Sends `tag command` and returns every response up to the tagged one. */
  async command(tag: string, command: string, timeoutMs = this.timeoutMs): Promise<ImapResponse[]> {
    await this.send(`${tag} ${command}\r\n`);
    return await this.until(tag, timeoutMs);
  }

  /** Reads until EOF (or timeout); returns the text. */
  async rest(timeoutMs = this.timeoutMs): Promise<string> {
    let all = dec.decode(this.#buf);
    this.#buf = new Uint8Array(0);
    while (await this.#fill(timeoutMs)) {
      all += dec.decode(this.#buf);
      this.#buf = new Uint8Array(0);
    }
    return all;
  }

  /** True once the server closed the connection. */
  get eof(): boolean {
    return this.#eof;
  }

  /** Closes the connection and waits for a read still pending on it. */
  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
    await this.#pending;
    this.#pending = null;
  }
}
