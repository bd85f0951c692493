/**
 * @module
 * A throwaway `redis-server` for tests and the benchmark: Debian's package
 * (installed with apt-get when missing, as root), on 127.0.0.1 and a free
 * port (redis has no port 0), with no persistence (`save ""`, no AOF) and
 * its files in a temporary directory removed at the end.
 *
 * Start-up waits for redis's own "Ready to accept connections" line, not a
 * timer. {@link RedisServer.restart} stops and starts it on the same port,
 * as an operator's restart would, to test reconnection.
 */

/** Where Debian installs the server. */
const REDIS_BIN_CANDIDATES = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"];

function findRedis(): string | null {
  for (const p of REDIS_BIN_CANDIDATES) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch {
      // not there
    }
  }
  return null;
}

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { DEBIAN_FRONTEND: "noninteractive" },
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { ok: out.success, text };
}

/**
 * Path of `redis-server`, installing Debian's package first if it is missing.
 * @throws {Error} with the reason when it is missing and cannot be installed
 */
export async function ensureRedisServer(): Promise<string> {
  const found = findRedis();
  if (found) return found;
  let install = await run("apt-get", ["install", "-y", "-qq", "redis-server"]);
  if (!install.ok) {
    // A fresh machine has no package lists yet.
    await run("apt-get", ["update", "-qq"]);
    install = await run("apt-get", ["install", "-y", "-qq", "redis-server"]);
  }
  const after = findRedis();
  if (after) return after;
  throw new Error(`redis-server is missing and apt-get could not install it: ${install.text.trim().slice(-300)}`);
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Most time to wait for redis-server to say it is ready, ms. */
const READY_TIMEOUT_MS = 15_000;

/** A running test Redis; see the module doc. */
export class RedisServer {
  /** Its TCP port on 127.0.0.1. */
  readonly port: number;
  readonly #bin: string;
  readonly #dir: string;
  readonly #password: string | undefined;
  #child: Deno.ChildProcess | null = null;
  #log = "";
  #pump: Promise<void> = Promise.resolve();

  private constructor(bin: string, dir: string, port: number, password: string | undefined) {
    this.#bin = bin;
    this.#dir = dir;
    this.port = port;
    this.#password = password;
  }

  /** `redis://` URL of this server (with the password, if any). */
  get url(): string {
    return `redis://${this.#password ? `:${encodeURIComponent(this.#password)}@` : ""}127.0.0.1:${this.port}`;
  }

  /** Installs if needed and starts a server; `password` turns on `requirepass`. */
  static async start(opts: { password?: string } = {}): Promise<RedisServer> {
    const bin = await ensureRedisServer();
    const dir = await Deno.makeTempDir({ prefix: "relay-redis-" });
    // A port taken between freePort() and redis's bind makes start fail: try a few.
    for (let attempt = 0;; attempt++) {
      const s = new RedisServer(bin, dir, freePort(), opts.password);
      try {
        await s.#spawn();
        return s;
      } catch (e) {
        if (attempt >= 3) {
          await Deno.remove(dir, { recursive: true }).catch(() => {});
          throw e;
        }
      }
    }
  }

  async #spawn(): Promise<void> {
    const conf = [
      `port ${this.port}`,
      "bind 127.0.0.1",
      'save ""',
      "appendonly no",
      `dir ${this.#dir}`,
      "daemonize no",
      'logfile ""',
      "loglevel notice",
      ...(this.#password ? [`requirepass ${JSON.stringify(this.#password)}`] : []),
    ].join("\n");
    const confPath = `${this.#dir}/redis.conf`;
    await Deno.writeTextFile(confPath, conf + "\n");
    const child = new Deno.Command(this.#bin, { args: [confPath], stdin: "null", stdout: "piped", stderr: "piped" })
      .spawn();
    this.#child = child;
    this.#log = "";
    const ready = Promise.withResolvers<void>();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const t of s.pipeThrough(new TextDecoderStream())) {
        this.#log = (this.#log + t).slice(-8000);
        if (this.#log.includes("Ready to accept connections")) ready.resolve();
      }
    };
    this.#pump = Promise.all([pump(child.stdout), pump(child.stderr)]).then(() => {}, () => {});
    ready.promise.catch(() => {});
    child.status.then((s) => ready.reject(new Error(`redis-server exited (${s.code}): ${this.#log.slice(-500)}`)));
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        ready.promise,
        new Promise<never>((_, rej) =>
          timer = setTimeout(() => rej(new Error("redis-server not ready")), READY_TIMEOUT_MS)
        ),
      ]);
    } catch (e) {
      await this.#kill();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  async #kill(): Promise<void> {
    const c = this.#child;
    if (c === null) return;
    this.#child = null;
    try {
      c.kill("SIGTERM");
    } catch {
      // already gone
    }
    await c.status;
    await this.#pump;
  }

  /** Stops the server (its clients see the connection close). */
  async stop(): Promise<void> {
    await this.#kill();
  }

  /** Starts it again on the same port after {@link stop}. */
  async startAgain(): Promise<void> {
    await this.#spawn();
  }

  /** Stops and starts it again on the same port. */
  async restart(): Promise<void> {
    await this.stop();
    await this.startAgain();
  }

  /** Stops the server and removes its directory. */
  async close(): Promise<void> {
    await this.#kill();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
