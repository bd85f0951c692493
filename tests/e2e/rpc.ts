/**
 * @module
 * A small client for the real Delta Chat core: spawns `deltachat-rpc-server`
 * (npm `@deltachat/stdio-rpc-server`), optionally inside a network
 * namespace, and speaks its JSON-RPC 2.0 over stdio (spec
 * imap-metadata-discovery §6.2: one JSON object per line, positional
 * parameters, snake_case method names, logs on stderr).
 *
 * - {@link DeltaChatRpc.call} sends a request and awaits its response, with
 *   a timeout naming the method;
 * - a pump calls `get_next_event` in a loop from start to stop and keeps
 *   every event in {@link DeltaChatRpc.events}, so a test can wait for an
 *   event that arrived before it started waiting ({@link DeltaChatRpc.mark},
 *   {@link DeltaChatRpc.waitEvent});
 * - stderr (core's log, `RUST_LOG`) and every event go to a log file for
 *   post-mortems; failures quote its tail.
 */

/** Path of the platform binary installed by npm. */
export const RPC_SERVER_BIN: string = new URL(
  "../../node_modules/@deltachat/stdio-rpc-server-linux-x64/deltachat-rpc-server",
  import.meta.url,
).pathname;

/** One event as `get_next_event` returns it. */
export interface DcEvent {
  /** Account id. */
  contextId: number;
  /** The event; `kind` names it, other fields depend on the kind. */
  event: { kind: string; [field: string]: unknown };
}

/** Options of {@link DeltaChatRpc.start}. */
export interface RpcOptions {
  /** `DC_ACCOUNTS_PATH`. */
  accountsDir: string;
  /** File that receives stderr and the event log. */
  logFile: string;
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
  /** `RUST_LOG`. */
  rustLog?: string;
  /** Label for messages, e.g. "alice". */
  label: string;
  /** Called with the pid right after the spawn (crash registry). */
  onSpawn?: (pid: number) => void;
}

/** Options of {@link DeltaChatRpc.waitEvent}. */
export interface WaitOptions {
  /** Give up after this long, ms. */
  timeoutMs: number;
  /** Only events at or after this index of {@link DeltaChatRpc.events} (see {@link DeltaChatRpc.mark}). */
  since?: number;
  /** What is awaited, for the error message. */
  what: string;
}

interface Pending {
  method: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

const enc = new TextEncoder();
/** Stderr kept in memory for error messages, characters. */
const TAIL_CHARS = 6_000;
/** How long `stop()` waits after closing stdin before SIGTERM, and after SIGTERM before SIGKILL, ms. */
const STOP_GRACE_MS = 5_000;

/** A running `deltachat-rpc-server`. */
export class DeltaChatRpc {
  /** Process id (`ip netns exec` execs the server, so this is the server itself). */
  readonly pid: number;
  /** Label for messages. */
  readonly label: string;
  /** Every event received so far, in order. */
  readonly events: DcEvent[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #log: Deno.FsFile;
  readonly #pending = new Map<number, Pending>();
  readonly #status: Promise<Deno.CommandStatus>;
  readonly #tasks: Promise<void>;
  #nextId = 1;
  #stderrTail = "";
  #eventWaiters: (() => void)[] = [];
  #exited = false;
  #stopping = false;

  private constructor(child: Deno.ChildProcess, log: Deno.FsFile, label: string) {
    this.#child = child;
    this.pid = child.pid;
    this.label = label;
    this.#log = log;
    this.#stdin = child.stdin.getWriter();
    this.#status = child.status.then((s) => {
      this.#exited = true;
      const err = new Error(`${label}: deltachat-rpc-server exited (code ${s.code})`);
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
      this.#wakeEvents();
      return s;
    });
    this.#tasks = Promise.all([this.#readStdout(), this.#readStderr(), this.#pumpEvents()]).then(() => {});
  }

  /** Spawns the server. */
  static async start(opts: RpcOptions): Promise<DeltaChatRpc> {
    await Deno.mkdir(opts.accountsDir, { recursive: true });
    const log = await Deno.open(opts.logFile, { create: true, append: true });
    const [cmd, args] = opts.netns ? ["ip", ["netns", "exec", opts.netns, RPC_SERVER_BIN]] : [RPC_SERVER_BIN, []];
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(cmd, {
        args,
        env: { DC_ACCOUNTS_PATH: opts.accountsDir, RUST_LOG: opts.rustLog ?? "info" },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      log.close();
      throw new Error(`${opts.label}: cannot start ${cmd}: ${(e as Error).message}`);
    }
    opts.onSpawn?.(child.pid);
    return new DeltaChatRpc(child, log, opts.label);
  }

  async #readStdout(): Promise<void> {
    let partial = "";
    try {
      for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
        partial += chunk;
        for (let nl = partial.indexOf("\n"); nl >= 0; nl = partial.indexOf("\n")) {
          const line = partial.slice(0, nl).trim();
          partial = partial.slice(nl + 1);
          if (line) this.#onMessage(line);
        }
      }
    } catch {
      // the process died; #status rejects what is pending
    }
  }

  #onMessage(line: string): void {
    let msg: { id?: number; result?: unknown; error?: { code: number; message: string } };
    try {
      msg = JSON.parse(line);
    } catch {
      this.#writeLog(`[unparsable stdout] ${line}\n`);
      return;
    }
    const p = msg.id === undefined ? undefined : this.#pending.get(msg.id);
    if (!p) return;
    this.#pending.delete(msg.id!);
    if (msg.error) p.reject(new Error(`${this.label}: ${p.method} failed: ${msg.error.message} (${msg.error.code})`));
    else p.resolve(msg.result);
  }

  async #readStderr(): Promise<void> {
    try {
      for await (const chunk of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderrTail = (this.#stderrTail + chunk).slice(-TAIL_CHARS);
        this.#writeLog(chunk);
      }
    } catch {
      // as above
    }
  }

  async #pumpEvents(): Promise<void> {
    // Bounded by the process lifetime: the pending call fails once the server exits.
    while (!this.#exited && !this.#stopping) {
      let ev: DcEvent;
      try {
        ev = await this.call<DcEvent>("get_next_event", [], { timeoutMs: 0 });
      } catch {
        return;
      }
      this.events.push(ev);
      this.#writeLog(`[event] ${JSON.stringify(ev)}\n`);
      this.#wakeEvents();
    }
  }

  #wakeEvents(): void {
    const w = this.#eventWaiters;
    this.#eventWaiters = [];
    for (const f of w) f();
  }

  #writeLog(text: string): void {
    try {
      this.#log.writeSync(enc.encode(text));
    } catch {
      // log closed during shutdown
    }
  }

  /**
   * Calls `method` with positional `params`.
   * @param options `timeoutMs` (default 60 000; 0 = none, only for `get_next_event`)
   * @throws {Error} JSON-RPC error, timeout or exit, naming the method
   */
  call<T>(method: string, params: unknown[] = [], options: { timeoutMs?: number } = {}): Promise<T> {
    if (this.#exited) return Promise.reject(new Error(`${this.label}: ${method}: the server has exited`));
    const id = this.#nextId++;
    const timeoutMs = options.timeoutMs ?? 60_000;
    return new Promise<T>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = (f: () => void) => {
        clearTimeout(timer);
        f();
      };
      this.#pending.set(id, {
        method,
        resolve: (v) => done(() => resolve(v as T)),
        reject: (e) => done(() => reject(e)),
      });
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          this.#pending.delete(id);
          reject(new Error(`${this.label}: ${method} got no answer within ${timeoutMs} ms\n${this.diagnostics()}`));
        }, timeoutMs);
      }
      const line = JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n";
      this.#stdin.write(enc.encode(line)).catch((e) => {
        this.#pending.delete(id);
        done(() => reject(new Error(`${this.label}: ${method}: cannot write to the server: ${e}`)));
      });
    });
  }

  /** Index of the next event: pass it as `since` to wait only for events after this point. */
  mark(): number {
    return this.events.length;
  }

  /**
   * Resolves with the first event (at or after `since`) that `match`
   * accepts, or null after `timeoutMs` or once the server has exited.
   */
  async nextEvent(
    match: (e: DcEvent) => boolean,
    options: { timeoutMs: number; since?: number },
  ): Promise<DcEvent | null> {
    const deadline = Date.now() + options.timeoutMs;
    let i = options.since ?? 0;
    for (;;) {
      for (; i < this.events.length; i++) if (match(this.events[i]!)) return this.events[i]!;
      const left = deadline - Date.now();
      if (left <= 0 || this.#exited) return null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#eventWaiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /**
   * Like {@link DeltaChatRpc.nextEvent}, but a timeout or exit is an error.
   * @throws {Error} with `what`, the last events and the stderr tail
   */
  async waitEvent(match: (e: DcEvent) => boolean, options: WaitOptions): Promise<DcEvent> {
    const ev = await this.nextEvent(match, options);
    if (ev) return ev;
    const why = this.#exited ? "the server exited" : `nothing within ${options.timeoutMs} ms`;
    throw new Error(`${this.label}: waiting for ${options.what}: ${why}\n${this.diagnostics()}`);
  }

  /** Recent events (kinds and messages) and the stderr tail, for error messages. */
  diagnostics(): string {
    const evs = this.events.slice(-25).map((e) => {
      const { kind, ...rest } = e.event;
      const s = JSON.stringify(rest);
      return `  #${e.contextId} ${kind} ${s.length > 300 ? s.slice(0, 300) + "…" : s}`;
    });
    return `--- ${this.label}: last events\n${evs.join("\n")}\n--- ${this.label}: stderr tail\n${
      this.#stderrTail.slice(-2500)
    }`;
  }

  /**
   * Stops the server: `stop_io_for_all_accounts`, then closes stdin (the
   * server exits at end of input), then SIGTERM and SIGKILL, each bounded.
   * Safe to call twice.
   */
  async stop(): Promise<void> {
    if (!this.#stopping && !this.#exited) {
      this.#stopping = true;
      await this.call("stop_io_for_all_accounts", [], { timeoutMs: 10_000 }).catch(() => {});
    }
    this.#stopping = true;
    try {
      await this.#stdin.close();
    } catch {
      // already closed
    }
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      if (await exitsWithin(this.#status, STOP_GRACE_MS)) break;
      try {
        this.#child.kill(signal);
      } catch {
        // exited meanwhile
      }
    }
    await this.#status;
    await this.#tasks;
    try {
      this.#log.close();
    } catch {
      // already closed
    }
  }
}

async function exitsWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    p.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return r;
}
