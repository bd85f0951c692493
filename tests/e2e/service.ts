/**
 * @module
 * Our product as a real process for the end-to-end test: `main.ts --config
 * FILE --log-level debug` under the same Deno and permissions as `deno task
 * start`, its log in a file, and its metrics read over HTTP.
 *
 * Readiness is the `running` line `main.ts` logs once every listener is
 * bound; an early exit or 30 s without it fails with the log tail.
 */

/** Options of {@link startService}. */
export interface ServiceOptions {
  /** The TOML config text. */
  toml: string;
  /** Directory for the config file and the log. */
  dir: string;
  /** Metrics listener, to scrape. */
  metrics: { hostname: string; port: number };
  /** Called with the pid right after the spawn (crash registry). */
  onSpawn?: (pid: number) => void;
}

/** A running `main.ts`. */
export interface Service {
  /** Process id. */
  pid: number;
  /** Path of the full log (stderr). */
  logFile: string;
  /** The last lines of the log, for error messages. */
  logTail(lines?: number): string;
  /** Scrapes the metrics: `name{labels}` (as printed) → value. */
  metrics(): Promise<Map<string, number>>;
  /** SIGTERM (main.ts shuts down cleanly), SIGKILL after 5 s; waits for the exit. */
  stop(): Promise<void>;
}

const ROOT = new URL("../../", import.meta.url).pathname;
/** The Deno that `deno task` uses (npm-installed). */
const DENO = `${ROOT}node_modules/.bin/deno`;
/** Bound on start-up: type-checking is off (`deno run`), but the machine is shared. */
const READY_TIMEOUT_MS = 30_000;

/**
 * Writes the config and starts `main.ts`.
 * @throws {Error} it exited or did not log `running` in time (message has the log tail)
 */
export async function startService(opts: ServiceOptions): Promise<Service> {
  const configPath = `${opts.dir}/service.toml`;
  const logFile = `${opts.dir}/service.log`;
  await Deno.writeTextFile(configPath, opts.toml);
  const log = await Deno.open(logFile, { create: true, append: true });
  const child = new Deno.Command(DENO, {
    // The permissions of `deno task start`, so the test catches a missing one.
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys=hostname",
      `${ROOT}main.ts`,
      "--config",
      configPath,
      "--log-level",
      "debug",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  opts.onSpawn?.(child.pid);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    wake();
    return s;
  });
  let tail = "";
  let ready = false;
  let waiters: (() => void)[] = [];
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const enc = new TextEncoder();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        log.writeSync(enc.encode(chunk));
        tail = (tail + chunk).slice(-50_000);
        if (!ready && /\brunning\b/.test(tail)) {
          ready = true;
          wake();
        }
      }
    } catch {
      // the process died
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const logTail = (lines = 40) => tail.split("\n").slice(-lines - 1).join("\n");

  const stop = async () => {
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      if (exited) break;
      try {
        child.kill(signal);
      } catch {
        // exited meanwhile
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([status, new Promise((r) => (timer = setTimeout(r, 5_000)))]);
      clearTimeout(timer);
    }
    await status;
    await pumps;
    log.close();
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!ready) {
    const left = deadline - Date.now();
    if (exited || left <= 0) {
      const why = exited ? "exited" : `did not log "running" within ${READY_TIMEOUT_MS} ms`;
      await stop();
      throw new Error(`main.ts ${why}:\n${logTail()}`);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((r) => {
      waiters.push(r);
      timer = setTimeout(r, left);
    });
    clearTimeout(timer);
  }

  return {
    pid: child.pid,
    logFile,
    logTail,
    async metrics() {
      const res = await fetch(`http://${opts.metrics.hostname}:${opts.metrics.port}/metrics`);
      const text = await res.text();
      if (!res.ok) throw new Error(`Metrics: HTTP ${res.status}: ${text.slice(0, 200)}`);
      return parseMetrics(text);
    },
    stop,
  };
}

/** Parses OpenMetrics/Prometheus text: every sample line becomes `name{labels}` → value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const sp = line.lastIndexOf(" ");
    if (sp < 0) continue;
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}
