/**
 * @module
 * Hostile or broken peers the service dials out to, on loopback:
 *
 * - {@link SilentUpstream}: an IMAP server that greets, answers CAPABILITY,
 *   and never answers anything else (proxy-mode reply queue finding);
 * - {@link FlakyRedis}: accepts, lets the service start, then drops every
 *   connection right after accepting it, or answers `-ERR max number of
 *   clients reached` (mesh reconnect storm finding);
 * - {@link FakeAccessServer}: the `access.http` endpoint answering slowly,
 *   with a huge body, or with a redirect (to a second server that would say
 *   "true", so following it is visible).
 *
 * Each counts what it saw (accepts, requests in flight, their peak).
 */

const enc = new TextEncoder();

async function writeAll(c: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await c.write(data.subarray(off));
}

function quietClose(c: Deno.Conn): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

/** An IMAP upstream that greets and answers CAPABILITY, then never answers another command. */
export class SilentUpstream {
  readonly port: number;
  /** Commands received that were left unanswered. */
  unanswered = 0;
  readonly #l: Deno.Listener;
  readonly #conns = new Set<Deno.Conn>();

  constructor() {
    const l = this.#l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (l.addr as Deno.NetAddr).port;
    (async () => {
      for await (const c of l) this.#serve(c);
    })().catch(() => {});
  }

  async #serve(c: Deno.Conn): Promise<void> {
    this.#conns.add(c);
    const dec = new TextDecoder();
    let pending = "";
    try {
      await writeAll(c, enc.encode("* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] silent upstream\r\n"));
      const buf = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await c.read(buf);
        if (n === null) break;
        pending += dec.decode(buf.subarray(0, n));
        let i: number;
        while ((i = pending.indexOf("\r\n")) >= 0) {
          const line = pending.slice(0, i);
          pending = pending.slice(i + 2);
          const [tag, cmd] = line.split(" ");
          if (cmd?.toUpperCase() === "CAPABILITY") {
            await writeAll(c, enc.encode(`* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN\r\n${tag} OK done\r\n`));
          } else {
            this.unanswered++;
          }
        }
      }
    } catch {
      // reset
    } finally {
      this.#conns.delete(c);
      quietClose(c);
    }
  }

  close(): void {
    try {
      this.#l.close();
    } catch {
      // closed
    }
    for (const c of this.#conns) quietClose(c);
  }
}

/**
 * How {@link FlakyRedis} misbehaves once flipped: `drop` every new
 * connection right after accepting it, refuse it with `maxclients`, or
 * (`huge`) send every held connection an array of 60 bulk strings of 8 MiB
 * each, unasked, streamed until the client hangs up.
 */
export type RedisMisbehaviour = "drop" | "maxclients" | "huge";

/**
 * A Redis stand-in. Until {@link FlakyRedis.misbehave} it accepts and holds
 * connections, answering `+PONG` to PING and nothing else (enough for the
 * mesh to start: it sends no AUTH without a password). After it, it closes
 * every held connection and drops each new one right after accepting it.
 */
export class FlakyRedis {
  readonly port: number;
  /** Connections accepted since {@link misbehave}. */
  acceptsSinceFlip = 0;
  /** All connections accepted. */
  accepts = 0;
  #mode: RedisMisbehaviour | null = null;
  readonly #l: Deno.Listener;
  readonly #conns = new Set<Deno.Conn>();

  constructor() {
    const l = this.#l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (l.addr as Deno.NetAddr).port;
    (async () => {
      for await (const c of l) {
        this.accepts++;
        if (this.#mode === null) {
          this.#hold(c);
          continue;
        }
        this.acceptsSinceFlip++;
        if (this.#mode === "huge") {
          this.#hold(c);
        } else if (this.#mode === "maxclients") {
          c.write(enc.encode("-ERR max number of clients reached\r\n")).catch(() => 0).finally(() => quietClose(c));
        } else {
          quietClose(c);
        }
      }
    })().catch(() => {});
  }

  async #hold(c: Deno.Conn): Promise<void> {
    this.#conns.add(c);
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await c.read(buf);
        if (n === null) break;
        if (new TextDecoder().decode(buf.subarray(0, n)).includes("PING")) await c.write(enc.encode("+PONG\r\n"));
      }
    } catch {
      // closed
    } finally {
      this.#conns.delete(c);
      quietClose(c);
    }
  }

  /** Bytes of the huge reply written so far (`huge`). */
  hugeBytesSent = 0;
  /** Held connections the client closed while we streamed the huge reply. */
  hugeRefused = 0;

  /** From now on: close the held connections, drop or refuse every new one; or stream them a huge reply. */
  misbehave(mode: RedisMisbehaviour): void {
    this.#mode = mode;
    this.acceptsSinceFlip = 0;
    if (mode === "huge") {
      for (const c of this.#conns) this.#streamHuge(c);
      return;
    }
    for (const c of this.#conns) quietClose(c);
  }

  async #streamHuge(c: Deno.Conn): Promise<void> {
    const bulk = 8 << 20;
    const chunk = new Uint8Array(256 * 1024).fill(0x62);
    try {
      await writeAll(c, enc.encode("*60\r\n"));
      for (let i = 0; i < 60 && this.#mode === "huge"; i++) {
        await writeAll(c, enc.encode(`$${bulk}\r\n`));
        for (let left = bulk; left > 0 && this.#mode === "huge"; left -= chunk.length) {
          await writeAll(c, chunk.subarray(0, Math.min(left, chunk.length)));
          this.hugeBytesSent += Math.min(left, chunk.length);
        }
        await writeAll(c, enc.encode("\r\n"));
      }
    } catch {
      this.hugeRefused++;
    }
  }

  /** Back to normal: new connections are held and answered again. */
  behave(): void {
    this.#mode = null;
  }

  close(): void {
    try {
      this.#l.close();
    } catch {
      // closed
    }
    for (const c of this.#conns) quietClose(c);
  }
}

/** How {@link FakeAccessServer} answers (`allow`: 200 `true`; `fail`: 503, a service that is down). */
export type AccessMisbehaviour = "slow" | "huge" | "redirect" | "allow" | "fail";

/**
 * An `access.http` endpoint. `slow`: never answers (holds each request).
 * `huge`: 200 with a body of `hugeBytes` (streamed, never ends early).
 * `redirect`: 307 to a second server ({@link redirectHits}) that answers
 * 200 `true`: a service that follows redirects would admit the client.
 */
export class FakeAccessServer {
  readonly url: string;
  /** Requests received. */
  requests = 0;
  /** Requests being held right now, and the most at once. */
  inFlight = 0;
  peakInFlight = 0;
  /** Requests that reached the redirect target. */
  redirectHits = 0;
  readonly #server: Deno.HttpServer;
  readonly #target: Deno.HttpServer | null = null;
  readonly #release = new AbortController();

  /** How requests are answered from now on. */
  mode: AccessMisbehaviour;

  /** Counters back to zero (requests, in flight peak). */
  resetCounts(): void {
    this.requests = 0;
    this.peakInFlight = this.inFlight;
  }

  constructor(mode: AccessMisbehaviour, hugeBytes = 50 << 20) {
    this.mode = mode;
    let targetUrl = "";
    if (mode === "redirect") {
      this.#target = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
        this.redirectHits++;
        return new Response("true");
      });
      targetUrl = `http://127.0.0.1:${(this.#target.addr as Deno.NetAddr).port}/allow`;
    }
    this.#server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
      this.requests++;
      this.inFlight++;
      this.peakInFlight = Math.max(this.peakInFlight, this.inFlight);
      try {
        const mode = this.mode;
        if (mode === "allow") return new Response("true");
        if (mode === "fail") return new Response("down for maintenance", { status: 503 });
        if (mode === "redirect") return new Response(null, { status: 307, headers: { location: targetUrl } });
        if (mode === "huge") {
          let left = hugeBytes;
          const chunk = new Uint8Array(64 * 1024).fill(0x74);
          return new Response(
            new ReadableStream({
              pull(ctrl) {
                if (left <= 0) return ctrl.close();
                const n = Math.min(left, chunk.length);
                left -= n;
                ctrl.enqueue(chunk.subarray(0, n));
              },
            }),
          );
        }
        // slow: hold until the client gives up or we shut down.
        await new Promise<void>((r) => {
          req.signal.addEventListener("abort", () => r());
          this.#release.signal.addEventListener("abort", () => r());
        });
        return new Response("false");
      } finally {
        this.inFlight--;
      }
    });
    this.url = `http://127.0.0.1:${(this.#server.addr as Deno.NetAddr).port}/access`;
  }

  async close(): Promise<void> {
    this.#release.abort();
    await this.#server.shutdown().catch(() => {});
    await this.#target?.shutdown().catch(() => {});
  }
}
