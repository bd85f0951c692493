/**
 * @module
 * A child process with line-oriented stdin and stdout for tests: stdout
 * lines are queued for {@link LineProcess.nextLine}, stderr's tail is kept
 * for error messages, and stopping is bounded (stdin closed, then SIGTERM,
 * then SIGKILL). `netns.ts` runs its bridge and the programs inside a
 * namespace through it.
 */

/** Options of a spawned process (`Netns.spawn`, {@link LineProcess}). */
export interface SpawnOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
}

/** Options of {@link LineProcess.nextLine}. */
export interface NextLineOptions {
  /** Give up after this long, ms (default 10 000). */
  timeoutMs?: number;
  /** Skip lines for which this returns false (they stay in {@link LineProcess.history}). */
  match?: (line: string) => boolean;
}

/** Options of {@link LineProcess.stop}. */
export interface StopOptions {
  /** How long to wait after closing stdin before SIGTERM, ms (default 5 000). */
  graceMs?: number;
}

/** How long SIGTERM gets before SIGKILL, ms. */
const TERM_WAIT_MS = 2_000;
/** Stderr kept per process for error messages, characters. */
const STDERR_TAIL_CHARS = 8_000;

const enc = new TextEncoder();

/**
 * A child process with line-oriented stdout and stdin. Stdout lines are
 * queued and taken with {@link LineProcess.nextLine}; stderr is kept (its
 * tail) for error messages.
 */
export class LineProcess implements AsyncDisposable {
  /** Process id (in the root PID namespace). */
  readonly pid: number;
  /** Every stdout line seen so far, in order. */
  readonly history: string[] = [];
  /** Resolves with the exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  readonly #child: Deno.ChildProcess;
  readonly #label: string;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #queue: string[] = [];
  #waiters: (() => void)[] = [];
  #stdoutDone = false;
  #stderr = "";
  readonly #pumps: Promise<void>;
  #exited: Deno.CommandStatus | null = null;

  /**
   * Spawns `cmd` with piped stdio.
   * @param cmd executable
   * @param args arguments
   * @param options environment and working directory, plus a label for messages
   */
  constructor(cmd: string, args: string[], options: SpawnOptions & { label?: string } = {}) {
    this.#label = options.label ?? cmd;
    this.#child = new Deno.Command(cmd, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
    }).spawn();
    this.pid = this.#child.pid;
    this.#writer = this.#child.stdin.getWriter();
    this.status = this.#child.status.then((s) => {
      this.#exited = s;
      this.#wake();
      return s;
    });
    this.#pumps = Promise.all([this.#readStdout(), this.#readStderr()]).then(() => {});
  }

  async #readStdout(): Promise<void> {
    let partial = "";
    try {
      for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
        partial += chunk;
        for (let nl = partial.indexOf("\n"); nl >= 0; nl = partial.indexOf("\n")) {
          const line = partial.slice(0, nl).replace(/\r$/, "");
          partial = partial.slice(nl + 1);
          this.history.push(line);
          this.#queue.push(line);
        }
        this.#wake();
      }
    } catch {
      // The pipe broke because the process died; the status says why.
    } finally {
      if (partial) {
        this.history.push(partial);
        this.#queue.push(partial);
      }
      this.#stdoutDone = true;
      this.#wake();
    }
  }

  async #readStderr(): Promise<void> {
    try {
      for await (const chunk of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr = (this.#stderr + chunk).slice(-STDERR_TAIL_CHARS);
      }
    } catch {
      // as above
    }
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** The last few KB of stderr. */
  get stderrTail(): string {
    return this.#stderr;
  }

  /** A description for error messages: label, exit status, stdout and stderr tails. */
  diagnostics(): string {
    const st = this.#exited
      ? `exited ${this.#exited.code}${this.#exited.signal ? ` (${this.#exited.signal})` : ""}`
      : "running";
    return `${this.#label} [pid ${this.pid}, ${st}]\n--- stdout (last 20 lines)\n${
      this.history.slice(-20).join("\n")
    }\n--- stderr (tail)\n${this.#stderr.slice(-3000)}`;
  }

  /**
   * Takes the next stdout line (skipping non-matching ones).
   * @throws {Error} on timeout or end of stdout, with {@link LineProcess.diagnostics}
   */
  async nextLine(options: NextLineOptions = {}): Promise<string> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.#queue.length) {
        const line = this.#queue.shift()!;
        if (!options.match || options.match(line)) return line;
      }
      if (this.#stdoutDone) throw new Error(`Stdout ended while waiting for a line\n${this.diagnostics()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`No matching line within ${timeoutMs} ms\n${this.diagnostics()}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /** Writes `line` and a newline to stdin. */
  async send(line: string): Promise<void> {
    await this.#writer.write(enc.encode(line + "\n"));
  }

  /**
   * Ends the process: closes stdin (well-behaved children exit), then sends
   * SIGTERM after `graceMs`, then SIGKILL; always waits for the exit and for
   * the output pipes to drain. Safe to call twice.
   */
  async stop(options: StopOptions = {}): Promise<Deno.CommandStatus> {
    try {
      await this.#writer.close();
    } catch {
      // already closed, or the process is gone
    }
    for (const [wait, signal] of [[options.graceMs ?? 5_000, "SIGTERM"], [TERM_WAIT_MS, "SIGKILL"]] as const) {
      if (await exitsWithin(this.status, wait)) break;
      try {
        this.#child.kill(signal);
      } catch {
        // exited meanwhile
      }
    }
    const status = await this.status;
    await this.#pumps;
    return status;
  }

  /** Same as {@link LineProcess.stop}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** True if `status` settles within `ms`. */
async function exitsWithin(status: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const done = await Promise.race([
    status.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return done;
}
