/**
 * @module
 * Admission at accept time for a plain TCP listener (`Deno.listen`): every
 * accepted connection goes through the {@link AdmissionGate}; a refused one
 * is handed to `onRefused` (default: closed at once, nothing written) and
 * counted, and `accept()` moves on to the next. The TLS counterpart,
 * which must decide before the handshake, is `tls_listener.ts`; both
 * implement {@link Acceptor}, so accept loops treat them alike.
 */

import type { AdmissionGate, RefusalReason, Ticket } from "./gate.ts";
import type { AdmissionMetrics, ListenerName } from "./metrics.ts";
import type { AcceptedConn } from "./node_conn.ts";

/** An admitted connection and its slot; release the ticket when the connection ends. */
export interface Admitted<C extends AcceptedConn = AcceptedConn> {
  /** The connection. */
  conn: C;
  /** Peer as `host:port` (IPv6 in brackets), for logs. */
  remote: string;
  /** The slot; {@link Ticket.release} when done (idempotent). */
  ticket: Ticket;
}

/** What accept loops use: plain and TLS listeners alike. */
export interface Acceptor<C extends AcceptedConn = AcceptedConn> {
  /** Bound address. */
  readonly addr: Deno.NetAddr;
  /**
   * Next admitted connection.
   * @throws {Deno.errors.BadResource} once the listener is closed; other errors as `Deno.Listener.accept`
   */
  accept(): Promise<Admitted<C>>;
  /** Stops listening; a pending {@link accept} rejects with `BadResource`. */
  close(): void;
}

/** Shared wiring of acceptors. */
export interface AdmissionOptions {
  /** The limits. */
  gate: AdmissionGate;
  /** Counters. */
  metrics: AdmissionMetrics;
  /** Listener label for the metrics. */
  listener: ListenerName;
  /** Clock, ms (default `performance.now`). */
  now?: () => number;
  /**
   * What to do with a refused plain connection (default: close it). It must
   * close the connection itself, soon (e.g. after a short IMAP `BYE`).
   */
  onRefused?: (conn: Deno.Conn, reason: RefusalReason) => void;
}

/** `host:port` of a socket address, IPv6 in brackets. */
export function formatRemote(a: Deno.Addr): string {
  if (a.transport !== "tcp" && a.transport !== "udp") return "?";
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

/** {@link Acceptor} over a `Deno.Listener`; see the module doc. */
export class PlainAcceptor implements Acceptor<Deno.Conn> {
  readonly #l: Deno.Listener;
  readonly #opts: AdmissionOptions;
  readonly #now: () => number;

  /** @param listener a bound TCP listener; @param opts limits, metrics, label */
  constructor(listener: Deno.Listener, opts: AdmissionOptions) {
    this.#l = listener;
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Bound address. */
  get addr(): Deno.NetAddr {
    return this.#l.addr as Deno.NetAddr;
  }

  /** Next admitted connection (refused ones are dealt with here). */
  async accept(): Promise<Admitted<Deno.Conn>> {
    for (;;) {
      const conn = await this.#l.accept();
      const a = conn.remoteAddr;
      const host = a.transport === "tcp" ? a.hostname : "?";
      const t = this.#opts.gate.admit(host, this.#now());
      if (typeof t === "string") {
        this.#opts.metrics.refused(this.#opts.listener, t);
        if (this.#opts.onRefused) this.#opts.onRefused(conn, t);
        else closeQuietly(conn);
        continue;
      }
      return { conn, remote: formatRemote(a), ticket: t };
    }
  }

  /** Stops listening. */
  close(): void {
    closeQuietly(this.#l);
  }
}
