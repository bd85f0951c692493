/**
 * @module
 * `main.ts` as a child process (`deno run -A main.ts …`) whose stderr log
 * is collected and searchable, for tests that send it signals (SIGHUP
 * reloads, SIGTERM).
 */

import { withTimeout } from "./relay_scope.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A main.ts process whose stderr is collected and searchable. */
export class MainProcess {
  /** The process (send it signals). */
  readonly child: Deno.ChildProcess;
  #text = "";
  #waiters: (() => void)[] = [];

  /**
   * @param args arguments after `main.ts`
   * @param wrapper a command that runs deno (e.g. `["prlimit", "--nofile=48:48"]`)
   */
  constructor(args: string[], wrapper: string[] = []) {
    const deno = [Deno.execPath(), "run", "-A", MAIN, ...args];
    const [cmd, ...rest] = [...wrapper, ...deno];
    const child = new Deno.Command(cmd!, {
      args: rest,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.child = child;
    (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#text += chunk;
        for (const w of this.#waiters.splice(0)) w();
      }
      for (const w of this.#waiters.splice(0)) w();
    })();
  }

  /** Everything it wrote to stderr so far. */
  get log(): string {
    return this.#text;
  }

  /** Waits until the log matches `re` (after `from` characters); returns the match. */
  async waitFor(re: RegExp, from = 0, timeoutMs = 20_000): Promise<RegExpExecArray> {
    return await withTimeout(
      (async () => {
        for (;;) {
          const m = re.exec(this.#text.slice(from));
          if (m) return m;
          await new Promise<void>((r) => this.#waiters.push(r));
        }
      })(),
      timeoutMs,
      `log line ${re}; log so far:\n${this.#text}`,
    );
  }

  /** SIGTERM, then waits for it to exit. */
  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await this.child.status;
  }
}
