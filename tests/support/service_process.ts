/**
 * @module
 * The real service (`main.ts`) in a child process, for tests that attack it
 * over real sockets and watch what an operator would: its log, its resident
 * memory and open descriptors (`/proc/<pid>`), its metrics port. Plus raw
 * HTTP probes from a chosen loopback source address (`node:net`
 * `localAddress`; `Deno.connect` cannot pick one), so a per-source limit
 * hitting an attacker on 127.0.0.1 can be told apart from a client on
 * 127.0.0.2.
 */

import * as net from "node:net";
import { withTimeout } from "./relay_scope.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A running `main.ts --config FILE`. */
export class ServiceProcess {
  /** The child. */
  readonly child: Deno.ChildProcess;
  /** Temporary directory holding the config. */
  readonly dir: string;
  #log = "";
  #wake: (() => void)[] = [];

  private constructor(child: Deno.ChildProcess, dir: string) {
    this.child = child;
    this.dir = dir;
    (async () => {
      for await (const t of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#log += t;
        for (const w of this.#wake.splice(0)) w();
      }
      for (const w of this.#wake.splice(0)) w();
    })();
  }

  /** Writes `toml` (plus `enable_stun = false`) to a temporary file and starts the service on it; resolves once it runs. */
  static async start(toml: string): Promise<ServiceProcess> {
    const dir = await Deno.makeTempDir();
    // STUN off: UDP 3478 is shared with whatever else runs on the machine (top-level key, so it goes first).
    await Deno.writeTextFile(`${dir}/service.toml`, `enable_stun = false\n${toml}`);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "--config", `${dir}/service.toml`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const p = new ServiceProcess(child, dir);
    await p.waitFor(/running/);
    return p;
  }

  /** Everything logged so far. */
  get log(): string {
    return this.#log;
  }

  /** Waits until the log matches `re`; returns the match. */
  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    return await withTimeout(
      (async () => {
        for (;;) {
          const m = re.exec(this.#log);
          if (m) return m;
          await new Promise<void>((r) => this.#wake.push(r));
        }
      })(),
      timeoutMs,
      `log line ${re}; log so far:\n${this.#log}`,
    );
  }

  /** Port of the listener whose start line matches `re` (one capture group: the port). */
  async port(re: RegExp): Promise<number> {
    return Number((await this.waitFor(re))[1]);
  }

  /** Resident memory, bytes. */
  rss(): number {
    const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${this.child.pid}/status`));
    return Number(m![1]) * 1024;
  }

  /** Open file descriptors. */
  fds(): number {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${this.child.pid}/fd`)) n++;
    return n;
  }

  /** SIGTERM, wait for exit, remove the config. */
  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await this.child.status;
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** A raw HTTP/1.1 exchange from `localAddress`: status, body and how long it took. */
export function httpFrom(
  port: number,
  request: string,
  localAddress = "127.0.0.2",
  timeoutMs = 5000,
): Promise<{ status: number; body: string; ms: number; closed: boolean }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress });
    let text = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms to ${request.split("\r\n")[0]}`));
    }, timeoutMs);
    s.on("connect", () => s.write(request));
    s.on("data", (d: Uint8Array) => {
      text += new TextDecoder().decode(d);
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = text.slice(0, end);
      // A response announcing its close is complete when the server closes (so `closed` is observed).
      if (/\r\nconnection: *close/i.test(head)) return;
      const len = /\r\ncontent-length: *(\d+)/i.exec(head);
      if (len && text.length >= end + 4 + Number(len[1])) finish(false);
    });
    s.on("close", () => finish(true));
    s.on("error", () => {});
    let done = false;
    function finish(closed: boolean) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (!m) return reject(new Error(`no HTTP response (${JSON.stringify(text.slice(0, 80))})`));
      resolve({
        status: Number(m[1]),
        body: text.slice(text.indexOf("\r\n\r\n") + 4),
        ms: performance.now() - t0,
        closed,
      });
    }
  });
}

/** `GET path` with `Connection: close`, from `localAddress`. */
export function getFrom(port: number, path: string, localAddress = "127.0.0.2", timeoutMs = 5000) {
  return httpFrom(port, `GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`, localAddress, timeoutMs);
}

/** One metric's value from the metrics port (sum over lines matching `name` and a label fragment). */
export async function metric(metricsPort: number, name: string, labels = ""): Promise<number> {
  const { body } = await getFrom(metricsPort, "/metrics", "127.0.0.9");
  let sum = 0;
  for (const line of body.split("\n")) {
    if (line.startsWith(name) && line.includes(labels)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** Polls `cond` every 50 ms until true or `ms` passed; returns the final value. */
export async function eventually(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (performance.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}
