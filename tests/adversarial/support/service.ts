/**
 * @module
 * The real service as an operator runs it (`deno run main.ts --config F`), seen
 * from outside: ports read from its log lines, memory and file descriptors from
 * `/proc/<pid>`, counters from its metrics port, and the two things a user
 * notices, `/ping` and an IMAP login, timed from 127.0.0.1 (the legitimate
 * source; attackers use 127.0.0.2+).
 */

const MAIN = new URL("../../../main.ts", import.meta.url).pathname;
/** The test TLS certificate (leaf for `localhost`) and its CA. */
export const TLS_DIR = new URL("../../fixtures/imap_tls/", import.meta.url).pathname;

/** Ports the service announced. */
export interface Ports {
  relay?: number;
  relayTls?: number;
  metrics?: number;
  imap?: number;
  imaps?: number;
}

/** A running main.ts. */
export class Service {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  readonly ports: Ports = {};
  #log = "";
  #waiters: (() => void)[] = [];
  #exited = false;

  private constructor(child: Deno.ChildProcess) {
    this.child = child;
    this.pid = child.pid;
    child.status.then(() => this.#exited = true);
    (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#log += chunk;
        for (const w of this.#waiters.splice(0)) w();
      }
      for (const w of this.#waiters.splice(0)) w();
    })();
  }

  /**
   * Starts main.ts with `toml` as its config file and waits for "running".
   * @param toml config text (ports 0: the log tells which were chosen)
   */
  static async start(toml: string, env: Record<string, string> = {}): Promise<Service> {
    const dir = await Deno.makeTempDir({ prefix: "adversarial-" });
    await Deno.writeTextFile(`${dir}/relay.toml`, toml);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-kv", MAIN, "--config", `${dir}/relay.toml`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1", ...env },
    }).spawn();
    const s = new Service(child);
    await s.waitFor(/iroh-relay-deno \S+ running/, 0, 30_000);
    const log = s.log;
    const num = (re: RegExp) => {
      const m = re.exec(log);
      return m ? Number(m[1]) : undefined;
    };
    const set = (k: keyof Ports, v: number | undefined) => {
      if (v !== undefined) s.ports[k] = v;
    };
    set("relay", num(/relay listening on http:\/\/127\.0\.0\.1:(\d+)(?!\d| \(captive)/));
    set("relayTls", num(/relay listening on https:\/\/127\.0\.0\.1:(\d+)/));
    set("metrics", num(/metrics on http:\/\/127\.0\.0\.1:(\d+)/));
    set("imap", num(/imap:\/\/127\.0\.0\.1:(\d+)/));
    set("imaps", num(/imaps:\/\/127\.0\.0\.1:(\d+)/));
    return s;
  }

  /** Everything the service logged so far. */
  get log(): string {
    return this.#log;
  }

  /** Whether the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Waits until the log (from character `from`) matches `re`. */
  async waitFor(re: RegExp, from = 0, timeoutMs = 20_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.#log.slice(from));
      if (m) return m;
      if (this.#exited || Date.now() > deadline) {
        throw new Error(`log never matched ${re}; log:\n${this.#log.slice(-3000)}`);
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(0, deadline - Date.now()));
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Resident memory, MiB (VmRSS). */
  rssMiB(): number {
    const status = Deno.readTextFileSync(`/proc/${this.pid}/status`);
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 1024;
  }

  /** Open file descriptors. */
  fds(): number {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${this.pid}/fd`)) n++;
    return n;
  }

  /** CPU time used so far (user + system), ms. */
  cpuMs(): number {
    const stat = Deno.readTextFileSync(`/proc/${this.pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the ")".
    return (Number(fields[11]) + Number(fields[12])) * 10;
  }

  /** The metrics text (fresh connection, 5 s bound). */
  async metrics(timeoutMs = 5000): Promise<string> {
    const r = await httpGet(this.ports.metrics!, "/metrics", timeoutMs);
    return r.body;
  }

  /** Sum of the samples of counter/gauge `name` whose labels include every `labels` pair. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return metricValue(await this.metrics(), name, labels);
  }

  /** SIGTERM; resolves with the time to exit, ms (SIGKILL after `killAfterMs`). */
  async stop(killAfterMs = 15_000): Promise<number> {
    const t0 = performance.now();
    if (!this.#exited) {
      try {
        this.child.kill("SIGTERM");
      } catch {
        // gone
      }
    }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, killAfterMs);
    await this.child.status;
    clearTimeout(timer);
    return performance.now() - t0;
  }
}

/** Sum of samples of `name` (exact metric name, e.g. `imap_login_failures_total`) matching `labels`; 0 if absent. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const pair of (m[3] ?? "").matchAll(/(\w+)="([^"]*)"/g)) have.set(pair[1]!, pair[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[4]);
  }
  return sum;
}

/** A raw `GET` with `Connection: close` over a fresh connection from 127.0.0.1. */
export async function httpGet(
  port: number,
  path: string,
  timeoutMs: number,
): Promise<{ status: number; head: string; body: string; ms: number }> {
  const t0 = performance.now();
  const conn = await withDeadline(Deno.connect({ hostname: "127.0.0.1", port }), timeoutMs, `connect :${port}`);
  try {
    await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
    const text = await withDeadline(readAll(conn), Math.max(1, timeoutMs - (performance.now() - t0)), `GET ${path}`);
    const split = text.indexOf("\r\n\r\n");
    return {
      status: Number(text.split(" ")[1]),
      head: text.slice(0, split),
      body: text.slice(split + 4),
      ms: performance.now() - t0,
    };
  } finally {
    try {
      conn.close();
    } catch {
      // closed
    }
  }
}

async function readAll(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return new TextDecoder().decode(await new Blob(chunks as BlobPart[]).bytes());
}

/** Rejects with `what` if `p` takes longer than `ms`. */
export async function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** `GET /ping` from 127.0.0.1: latency in ms; throws when not 200 within `timeoutMs`. */
export async function pingMs(port: number, timeoutMs: number): Promise<number> {
  const r = await httpGet(port, "/ping", timeoutMs);
  if (r.status !== 200) throw new Error(`/ping answered ${r.status}`);
  return r.ms;
}

/**
 * A fresh IMAP session from 127.0.0.1: greeting, `LOGIN user pass`, `LOGOUT`.
 * Resolves with the tagged LOGIN reply line and the time to it, ms.
 */
export async function imapLogin(
  port: number,
  timeoutMs: number,
  user = "alice@example.org",
  pass = "secret",
): Promise<{ reply: string; ms: number }> {
  const t0 = performance.now();
  const conn = await withDeadline(Deno.connect({ hostname: "127.0.0.1", port }), timeoutMs, "IMAP connect");
  const dec = new TextDecoder();
  let text = "";
  const buf = new Uint8Array(16 * 1024);
  const until = async (re: RegExp): Promise<RegExpExecArray> => {
    for (;;) {
      const m = re.exec(text);
      if (m) return m;
      const n = await conn.read(buf);
      if (n === null) throw new Error(`IMAP closed; got ${JSON.stringify(text)}`);
      text += dec.decode(buf.subarray(0, n));
    }
  };
  try {
    return await withDeadline(
      (async () => {
        await until(/^\* (OK|BYE|PREAUTH)[^\r]*\r\n/m);
        if (/^\* BYE/m.test(text)) throw new Error(`IMAP refused: ${text.trim()}`);
        await conn.write(new TextEncoder().encode(`L1 LOGIN "${user}" "${pass}"\r\n`));
        const m = await until(/^L1 [^\r]*\r\n/m);
        const ms = performance.now() - t0;
        await conn.write(new TextEncoder().encode("L2 LOGOUT\r\n")).catch(() => 0);
        return { reply: m[0].trim(), ms };
      })(),
      timeoutMs - (performance.now() - t0),
      "IMAP login",
    );
  } finally {
    try {
      conn.close();
    } catch {
      // closed
    }
  }
}

/** RSS samples of a service taken every `everyMs` until stopped; `peak` tracked; `onSample` may abort early. */
export class RssMonitor {
  readonly samples: { t: number; mib: number }[] = [];
  peak = 0;
  #timer: ReturnType<typeof setInterval>;
  readonly #t0 = performance.now();

  constructor(svc: Service, everyMs = 200, onSample?: (mib: number) => void) {
    this.#timer = setInterval(() => {
      if (svc.exited) return;
      const mib = svc.rssMiB();
      this.samples.push({ t: performance.now() - this.#t0, mib });
      this.peak = Math.max(this.peak, mib);
      onSample?.(mib);
    }, everyMs);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/**
 * Runs `probe` every `everyMs` until `signal` aborts; records each latency and
 * each failure (a probe that throws or exceeds its own bound).
 */
export async function probeLoop(
  probe: () => Promise<number>,
  signal: AbortSignal,
  everyMs = 500,
): Promise<{ ok: number; worstMs: number; failures: string[] }> {
  const out = { ok: 0, worstMs: 0, failures: [] as string[] };
  while (!signal.aborted) {
    try {
      const ms = await probe();
      out.ok++;
      out.worstMs = Math.max(out.worstMs, ms);
    } catch (e) {
      out.failures.push((e as Error).message);
    }
    await sleepUnless(everyMs, signal);
  }
  return out;
}

/** Sleeps `ms` or until `signal` aborts. */
export function sleepUnless(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done);
  });
}

/** Polls `pred` every 100 ms until true or `timeoutMs`; returns its last value. */
export async function pollUntil(pred: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() > deadline) return false;
    await sleepUnless(100);
  }
}

/** Options of {@link serviceToml}. */
export interface TomlOptions {
  /** Serve IMAP too (plain + TLS, standalone, `login = "any"` unless `imapExtra` says otherwise). */
  imap?: boolean;
  /** The relay on HTTPS (test certificate) instead of plain HTTP. */
  relayTls?: boolean;
  /** Extra top-level lines (before any table). */
  top?: string;
  /** Lines for `[limits]`. */
  limits?: string;
  /** Lines for `[imap]`. */
  imapExtra?: string;
  /** Lines for `[imap.limits]`. */
  imapLimits?: string;
  /** Whole extra tables appended at the end. */
  tail?: string;
}

/** A config for one test: everything on 127.0.0.1 port 0, metrics on, info logs. */
export function serviceToml(o: TomlOptions = {}): string {
  const lines = [
    'http_bind_addr = "127.0.0.1:0"',
    "enable_metrics = true",
    'metrics_bind_addr = "127.0.0.1:0"',
    // UDP 3478 is shared with whatever else runs on the machine; no attack here is on STUN.
    "enable_stun = false",
    o.top ?? "",
    "[log]",
    'level = "info"',
    "[limits]",
    o.limits ?? "",
  ];
  if (o.relayTls) {
    lines.push(
      "[tls]",
      'cert_mode = "Manual"',
      'https_bind_addr = "127.0.0.1:0"',
      `manual_cert_path = "${TLS_DIR}cert.pem"`,
      `manual_key_path = "${TLS_DIR}key.pem"`,
    );
  }
  if (o.imap) {
    lines.push(
      "[imap]",
      'bind_addr = "127.0.0.1:0"',
      'tls_bind_addr = "127.0.0.1:0"',
      `cert_path = "${TLS_DIR}cert.pem"`,
      `key_path = "${TLS_DIR}key.pem"`,
      'iroh_relay_url = "https://relay.example.org/"',
      o.imapExtra ?? 'login = "any"',
      "[imap.limits]",
      o.imapLimits ?? "",
    );
  }
  lines.push(o.tail ?? "");
  return lines.join("\n") + "\n";
}
