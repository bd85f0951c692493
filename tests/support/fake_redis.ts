/**
 * @module
 * A misbehaving "Redis" on 127.0.0.1 and port 0 for reconnection and
 * reply-size tests: each accepted connection is handed to a behaviour
 * chosen by its number (the first is usually a healthy server, so the
 * client's start succeeds; the later ones accept and drop, answer `-ERR`,
 * cut a reply off or send an oversize one). It answers PING with PONG and
 * anything else with `+OK` when asked to behave.
 */

const enc = new TextEncoder();

/** What one accepted connection does. */
export type FakeBehaviour = (conn: Deno.Conn, fake: FakeRedis) => Promise<void>;

/** See the module doc. */
export class FakeRedis {
  /** Its port. */
  readonly port: number;
  /** Connections accepted so far. */
  accepted = 0;
  readonly #listener: Deno.Listener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #loop: Promise<void>;
  readonly #tasks = new Set<Promise<void>>();
  #behave: (n: number) => FakeBehaviour;
  #waiters: { n: number; resolve: () => void }[] = [];

  /** @param behave behaviour of the n-th connection (0-based) */
  constructor(behave: (n: number) => FakeBehaviour) {
    this.#behave = behave;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#loop = this.#accept();
  }

  /** `redis://` URL. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Changes the behaviour of later connections. */
  set behave(b: (n: number) => FakeBehaviour) {
    this.#behave = b;
  }

  /** Resolves once `n` connections have been accepted. */
  accepts(n: number): Promise<void> {
    if (this.accepted >= n) return Promise.resolve();
    const w = Promise.withResolvers<void>();
    this.#waiters.push({ n, resolve: w.resolve });
    return w.promise;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let c: Deno.Conn;
      try {
        c = await this.#listener.accept();
      } catch {
        return;
      }
      const n = this.accepted++;
      this.#conns.add(c);
      this.#waiters = this.#waiters.filter((w) => {
        if (this.accepted < w.n) return true;
        w.resolve();
        return false;
      });
      const t: Promise<void> = this.#behave(n)(c, this).catch(() => {}).finally(() => {
        this.#conns.delete(c);
        this.#tasks.delete(t);
        closeQuietly(c);
      });
      this.#tasks.add(t);
    }
  }

  /** Closes every open connection (the client sees its link drop). */
  dropAll(): void {
    for (const c of this.#conns) closeQuietly(c);
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    this.#listener.close();
    this.dropAll();
    await this.#loop;
    await Promise.all([...this.#tasks]);
  }
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

/** Writes all of `b`. */
export async function writeAll(c: Deno.Conn, b: Uint8Array | string): Promise<void> {
  const bytes = typeof b === "string" ? enc.encode(b) : b;
  for (let off = 0; off < bytes.length;) off += await c.write(bytes.subarray(off));
}

/** Counts commands (arrays) in what arrived, roughly: enough for the fakes, which see small commands. */
function countCommands(text: string): number {
  return text.split("\r\n").filter((l) => l.startsWith("*")).length;
}

/** A server that answers every command: PONG to PING, `+OK` otherwise; runs until closed. */
export const healthy: FakeBehaviour = async (c) => {
  const buf = new Uint8Array(64 * 1024);
  const dec = new TextDecoder();
  for (;;) {
    const n = await c.read(buf);
    if (n === null) return;
    const text = dec.decode(buf.subarray(0, n));
    let out = "";
    for (let i = countCommands(text); i > 0; i--) out += text.includes("PING") ? "+PONG\r\n" : "+OK\r\n";
    await writeAll(c, out);
  }
};

/** Accepts and closes at once. */
export const acceptThenDrop: FakeBehaviour = async (c) => {
  c.close();
  await Promise.resolve();
};

/** What Redis at `maxclients` does: an error line, then close. */
export const maxClientsReached: FakeBehaviour = async (c) => {
  await writeAll(c, "-ERR max number of clients reached\r\n");
};

/** Answers the handshake, then cuts the next reply off after a few bytes and closes. */
export const replyCutOff: FakeBehaviour = async (c) => {
  const buf = new Uint8Array(4096);
  if (await c.read(buf) === null) return;
  await writeAll(c, "+PONG\r\n$100\r\nabc");
};

/**
 * Answers the handshake, then sends an array of 60 bulk strings of 8 MB each
 * (about 480 MB) as fast as the client reads.
 */
export const oversizeArray: FakeBehaviour = async (c) => {
  const buf = new Uint8Array(4096);
  if (await c.read(buf) === null) return;
  await writeAll(c, "+PONG\r\n*60\r\n");
  const chunk = new Uint8Array(1024 * 1024).fill(0x61);
  for (let i = 0; i < 60; i++) {
    await writeAll(c, `$${8 * 1024 * 1024}\r\n`);
    for (let k = 0; k < 8; k++) await writeAll(c, chunk);
    await writeAll(c, "\r\n");
  }
};

/** Like {@link oversizeArray}, but each element is 256 KiB: under any single-value check, over the reply cap in total. */
export const oversizeArrayOfSmall: FakeBehaviour = async (c) => {
  const buf = new Uint8Array(4096);
  if (await c.read(buf) === null) return;
  await writeAll(c, "+PONG\r\n*1000\r\n");
  const chunk = new Uint8Array(256 * 1024).fill(0x61);
  for (let i = 0; i < 1000; i++) {
    await writeAll(c, `$${chunk.length}\r\n`);
    await writeAll(c, chunk);
    await writeAll(c, "\r\n");
  }
};
