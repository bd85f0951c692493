/**
 * @module
 * The socket surface the raw transport needs ({@link ByteConn}; `Deno.Conn`
 * and `Deno.TlsConn` have it) and the few socket helpers its three parts
 * share: the listener (`tcp.ts`), the upgraded read side (`upgrade.ts`) and
 * the write side (`stream_sender.ts`).
 */

import { type HttpResponse, serializeResponse } from "./http1.ts";

/** The socket surface this transport needs; `Deno.Conn` and `Deno.TlsConn` have it. */
export interface ByteConn {
  /** Reads into `p`; null at EOF. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; returns how much. */
  write(p: Uint8Array): Promise<number>;
  /** Closes both directions. */
  close(): void;
}

/** Writes all of `data`. */
export async function writeAll(conn: ByteConn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Closes `conn`, ignoring that it may be closed already. */
export function closeQuietly(conn: ByteConn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** True for the errors of a connection the peer (or a close) ended: not worth a log line. */
export function isConnectionGone(e: unknown): boolean {
  return e instanceof Deno.errors.BadResource || e instanceof Deno.errors.ConnectionReset ||
    e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.Interrupted ||
    e instanceof Deno.errors.NotConnected;
}

/** Writes `res` with `Connection: close` (best effort) and closes the connection. */
export async function respondAndClose(conn: ByteConn, res: HttpResponse): Promise<void> {
  try {
    await writeAll(conn, serializeResponse(res, { close: true }));
  } catch {
    // the peer is gone: nothing to tell it
  }
  // Close here: a refused upgrade has already left the establish-timeout watch.
  closeQuietly(conn);
}
