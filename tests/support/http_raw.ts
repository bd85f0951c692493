/**
 * @module
 * A raw HTTP/1.1 exchange over one TCP (or TLS) connection, for tests that
 * need exact control of request bytes (absent or odd headers, half-sent
 * requests) and that must see whether the server closes the connection.
 * `fetch` pools connections and hides both, so it is not used here.
 */

/** A parsed response. */
export interface RawResponse {
  /** Status code. */
  status: number;
  /** Header pairs in order, names lowercased. */
  headers: [string, string][];
  /** Body (by Content-Length, or until EOF when absent on a closed connection). */
  body: string;
  /** True if the server closed the connection after the response (EOF seen within the wait). */
  closed: boolean;
}

/** Options of {@link rawRequest}. */
export interface RawOptions {
  /** Connect with TLS using these CA certificates and server name. */
  tls?: { caCerts: string[]; serverName: string };
  /** How long to wait for the response and for EOF, ms. Default 3000. */
  timeoutMs?: number;
  /** Wait for the server to close after the response (to report `closed`). Default false. */
  expectClose?: boolean;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** First value of a response header. */
export function getHeader(res: RawResponse, name: string): string | undefined {
  return res.headers.find(([k]) => k === name.toLowerCase())?.[1];
}

/** Opens a connection to `127.0.0.1:port`. */
export function dial(port: number, opts: RawOptions = {}): Promise<Deno.Conn> {
  return opts.tls
    ? Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: opts.tls.caCerts,
      serverName: opts.tls.serverName,
    } as Deno.ConnectTlsOptions)
    : Deno.connect({ hostname: "127.0.0.1", port });
}

/** Reads until `pred(buffer)` holds, EOF, or the deadline; returns the bytes and whether EOF was seen. */
async function readUntil(
  conn: Deno.Conn,
  start: Uint8Array,
  pred: (b: Uint8Array) => boolean,
  deadline: number,
): Promise<{ bytes: Uint8Array; eof: boolean }> {
  let bytes = start;
  const chunk = new Uint8Array(16 * 1024);
  while (!pred(bytes)) {
    const left = deadline - Date.now();
    if (left <= 0) return { bytes, eof: false };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), left));
    let n: number | null | "timeout";
    try {
      n = await Promise.race([conn.read(chunk), timeout]);
    } catch {
      n = null; // reset counts as closed
    } finally {
      clearTimeout(timer);
    }
    if (n === "timeout") return { bytes, eof: false };
    if (n === null) return { bytes, eof: true };
    const next = new Uint8Array(bytes.length + n);
    next.set(bytes);
    next.set(chunk.subarray(0, n), bytes.length);
    bytes = next;
  }
  return { bytes, eof: false };
}

/** Bytes read past the end of a response, per connection. */
const leftovers = new WeakMap<Deno.Conn, Uint8Array>();

function headEnd(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

/**
 * Reads one response from `conn`. With `expectClose`, also waits for EOF.
 * The connection is left open for the caller to close.
 */
export async function readResponse(conn: Deno.Conn, opts: RawOptions = {}): Promise<RawResponse> {
  const deadline = Date.now() + (opts.timeoutMs ?? 3000);
  const start = leftovers.get(conn) ?? new Uint8Array(0);
  leftovers.delete(conn);
  const head = await readUntil(conn, start, (b) => headEnd(b) >= 0, deadline);
  const end = headEnd(head.bytes);
  if (end < 0) throw new Error(`No response head (eof=${head.eof}): ${JSON.stringify(dec.decode(head.bytes))}`);
  const lines = dec.decode(head.bytes.subarray(0, end)).split("\r\n");
  const status = Number(lines[0]!.split(" ")[1]);
  const headers: [string, string][] = lines.slice(1).map((l) => {
    const i = l.indexOf(":");
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
  });
  const cl = headers.find(([k]) => k === "content-length")?.[1];
  const bodyStart = end + 4;
  const want = cl === undefined ? 0 : Number(cl);
  const full = await readUntil(conn, head.bytes, (b) => b.length >= bodyStart + want, deadline);
  const body = dec.decode(full.bytes.subarray(bodyStart, bodyStart + want));
  // Pipelined responses: keep what belongs to the next one.
  if (full.bytes.length > bodyStart + want) leftovers.set(conn, full.bytes.slice(bodyStart + want));
  let closed = full.eof || head.eof;
  if (opts.expectClose && !closed) {
    closed = (await readUntil(conn, new Uint8Array(0), () => false, deadline)).eof;
  }
  return { status, headers, body, closed };
}

/**
 * Sends `request` (raw text, CRLFs included) on a new connection and reads
 * one response. The connection is closed afterwards.
 */
export async function rawRequest(port: number, request: string, opts: RawOptions = {}): Promise<RawResponse> {
  const conn = await dial(port, opts);
  try {
    await writeAllRaw(conn, enc.encode(request));
    return await readResponse(conn, opts);
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

/** `GET path` with `Connection: close` and extra header lines. */
export function rawGet(
  port: number,
  path: string,
  headers: string[] = [],
  opts: RawOptions = {},
): Promise<RawResponse> {
  const extra = headers.map((h) => `${h}\r\n`).join("");
  return rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n${extra}\r\n`, opts);
}

/** Writes all of `data`. */
export async function writeAllRaw(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Waits up to `timeoutMs` for the peer to close `conn`; true if it did (EOF or reset). Discards data. */
export async function waitForClose(conn: Deno.Conn, timeoutMs: number): Promise<boolean> {
  return (await readUntil(conn, new Uint8Array(0), () => false, Date.now() + timeoutMs)).eof;
}
