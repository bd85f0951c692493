/**
 * @module
 * Child processes of the benchmark and what Linux tells about them: every
 * server and load generator runs in its own process so that their CPU time
 * can be read apart, from `/proc/<pid>/stat`.
 *
 * - {@link Child}: a spawned process whose stdout is read as JSON-line
 *   events, whose stderr is kept (tail) for error messages or written to a
 *   log file, and which is always killed by {@link Child.stop}.
 * - {@link cpuSeconds}, {@link rssKiB}, {@link fdLimit}: `/proc` readers.
 * - {@link freePort}, {@link waitHttp}: start-up helpers.
 *
 * Children are started with `Deno.execPath()` directly (not through `npx`),
 * so the pid we read `/proc` for is the process doing the work.
 */

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux/x86-64). */
const CLK_TCK = 100;

/** Most stderr bytes kept in memory for error messages. */
const STDERR_TAIL = 8 * 1024;

/** One JSON object a child printed on a stdout line. */
export type ChildEvent = Record<string, unknown> & { event: string };

/** Options of {@link Child.spawn}. */
export interface SpawnOptions {
  /** Label for messages. */
  name: string;
  /** Working directory. */
  cwd?: string;
  /** Write stderr to this file instead of only keeping its tail. */
  stderrFile?: string;
  /** Keep stdin open for commands ({@link Child.send}). */
  stdin?: boolean;
}

/** A spawned child; see the module doc. */
export class Child {
  /** Label for messages. */
  readonly name: string;
  /** Operating-system process id. */
  readonly pid: number;
  readonly #proc: Deno.ChildProcess;
  readonly #events: ChildEvent[] = [];
  #waiters: (() => void)[] = [];
  #stderrTail = "";
  #stdoutDone = false;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | null = null;
  /** Resolves with the exit status once the process has ended. */
  readonly status: Promise<Deno.CommandStatus>;
  #exited: Deno.CommandStatus | null = null;
  readonly #pumps: Promise<void>[] = [];

  private constructor(proc: Deno.ChildProcess, opts: SpawnOptions) {
    this.name = opts.name;
    this.#proc = proc;
    this.pid = proc.pid;
    this.status = proc.status.then((s) => {
      this.#exited = s;
      this.#wake();
      return s;
    });
    if (opts.stdin) this.#stdin = proc.stdin.getWriter();
    this.#pumps.push(this.#readStdout(), this.#readStderr(opts.stderrFile));
  }

  /** Starts `cmd args` with piped stdout/stderr (and stdin if asked). */
  static spawn(cmd: string, args: string[], opts: SpawnOptions): Child {
    const proc = new Deno.Command(cmd, {
      args,
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new Child(proc, opts);
  }

  /** Exit status if the process has ended, else null. */
  get exited(): Deno.CommandStatus | null {
    return this.#exited;
  }

  /** The last few KiB the child wrote to stderr. */
  get stderrTail(): string {
    return this.#stderrTail;
  }

  async #readStdout(): Promise<void> {
    let rest = "";
    try {
      for await (const text of this.#proc.stdout.pipeThrough(new TextDecoderStream())) {
        rest += text;
        let nl: number;
        while ((nl = rest.indexOf("\n")) >= 0) {
          const line = rest.slice(0, nl).trim();
          rest = rest.slice(nl + 1);
          if (line.startsWith("{")) {
            try {
              const ev = JSON.parse(line);
              if (ev && typeof ev.event === "string") {
                this.#events.push(ev);
                this.#wake();
                continue;
              }
            } catch {
              // not an event: fall through and keep it as text
            }
          }
          if (line) this.#addStderr(`[stdout] ${line}\n`);
        }
      }
    } catch {
      // the process went away
    }
    this.#stdoutDone = true;
    this.#wake();
  }

  async #readStderr(file?: string): Promise<void> {
    const out = file ? await Deno.open(file, { write: true, create: true, truncate: true }) : null;
    try {
      const dec = new TextDecoder();
      for await (const chunk of this.#proc.stderr) {
        this.#addStderr(dec.decode(chunk, { stream: true }));
        if (out) await out.write(chunk);
      }
    } catch {
      // the process went away
    } finally {
      out?.close();
    }
  }

  #addStderr(s: string): void {
    this.#stderrTail = (this.#stderrTail + s).slice(-STDERR_TAIL);
  }

  #wake(): void {
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w();
  }

  /**
   * Waits for the next event named `name` (earlier events of other names are
   * skipped and dropped).
   * @throws {Error} on timeout, or if the child exits first (with its stderr tail)
   */
  async waitEvent(name: string, timeoutMs: number): Promise<ChildEvent> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      while (this.#events.length > 0) {
        const ev = this.#events.shift()!;
        if (ev.event === name) return ev;
        if (ev.event === "error") throw new Error(`${this.name}: ${String(ev.message)}`);
      }
      if (this.#stdoutDone || this.#exited) {
        const code = this.#exited ? ` (exit code ${this.#exited.code})` : "";
        throw new Error(`${this.name} ended before "${name}"${code}: ${lastLines(this.#stderrTail)}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.name}: no "${name}" within ${Math.round(timeoutMs / 1000)} s`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  }

  /** Writes one command line to the child's stdin. */
  async send(line: string): Promise<void> {
    if (!this.#stdin) throw new Error(`${this.name}: stdin not piped`);
    await this.#stdin.write(new TextEncoder().encode(line + "\n"));
  }

  /** Sends SIGKILL now, without waiting (for interrupts). */
  kill(): void {
    try {
      this.#proc.kill("SIGKILL");
    } catch {
      // already gone
    }
  }

  /**
   * Ends the process: SIGTERM, then SIGKILL after `graceMs`. Idempotent;
   * resolves once it has exited and its output is drained.
   */
  async stop(graceMs = 2000): Promise<void> {
    if (this.#stdin) {
      const w = this.#stdin;
      this.#stdin = null;
      await w.close().catch(() => {});
    }
    if (!this.#exited) {
      try {
        this.#proc.kill("SIGTERM");
      } catch {
        // already gone
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const killed = await Promise.race([
        this.status.then(() => false),
        new Promise<boolean>((r) => timer = setTimeout(() => r(true), graceMs)),
      ]);
      clearTimeout(timer);
      if (killed) {
        try {
          this.#proc.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    await this.status;
    await Promise.allSettled(this.#pumps);
  }
}

/** The last non-empty lines of `text`, for one-line error messages. */
export function lastLines(text: string, n = 3): string {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  return lines.length ? lines.slice(-n).join(" | ") : "(no output)";
}

/** User + system CPU time of process `pid` (all threads), in seconds; NaN if it is gone. */
export function cpuSeconds(pid: number | "self"): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // f[0] is field 3 (state): utime is field 14, stime field 15.
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** Resident set size of `pid` (`VmRSS`), in KiB; NaN if it is gone. */
export function rssKiB(pid: number): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Soft and hard open-file limits of `pid` (`/proc/<pid>/limits`). */
export function fdLimit(pid: number | "self"): { soft: number; hard: number } {
  const text = Deno.readTextFileSync(`/proc/${pid}/limits`);
  const m = text.match(/^Max open files\s+(\S+)\s+(\S+)/m);
  const num = (s: string | undefined) => (s === undefined || s === "unlimited" ? Infinity : Number(s));
  return { soft: num(m?.[1]), hard: num(m?.[2]) };
}

/**
 * Tries to raise the open-file limit of a running process with `prlimit`
 * (needs CAP_SYS_RESOURCE to go past the hard limit).
 * @returns null on success, else why it failed
 */
export async function raiseFdLimit(pid: number, n: number): Promise<string | null> {
  try {
    const out = await new Deno.Command("prlimit", {
      args: [`--pid=${pid}`, `--nofile=${n}:${n}`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (out.success) return null;
    return new TextDecoder().decode(out.stderr).trim() || `prlimit exited with ${out.code}`;
  } catch (e) {
    return (e as Error).message;
  }
}

/** A currently free TCP port on 127.0.0.1 (bound, then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Polls `http://127.0.0.1:port/path` until it answers 2xx.
 * @throws {Error} if it does not within `timeoutMs`, or `child` exits first
 */
export async function waitHttp(port: number, path: string, timeoutMs: number, child?: Child): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    if (child?.exited) {
      throw new Error(`${child.name} exited (code ${child.exited.code}): ${lastLines(child.stderrTail)}`);
    }
    try {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (res.ok) return;
      last = `status ${res.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`127.0.0.1:${port}${path} not ready within ${timeoutMs} ms (${last})`);
}

/** The 1-minute load average, or NaN. */
export function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

/**
 * Sets the CPU affinity of every thread of `pid` (`taskset -a -p -c`), e.g.
 * "0" or "0-1". Threads started later inherit it from their creator.
 * @returns null on success, else why it failed
 */
export async function setAffinity(pid: number, cpus: string): Promise<string | null> {
  try {
    const out = await new Deno.Command("taskset", {
      args: ["-a", "-p", "-c", cpus, String(pid)],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.success) return null;
    return new TextDecoder().decode(out.stderr).trim() || `taskset exited with ${out.code}`;
  } catch (e) {
    return (e as Error).message;
  }
}
