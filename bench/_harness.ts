/**
 * @module
 * What every benchmark scenario shares (moved out of `main.ts` so scenarios
 * can live in their own files): child-process scopes, one measured
 * load-generator run, the relay's metrics, figure helpers and the run
 * context a scenario writes its figures into.
 */

import { Child, type ChildEvent, setAffinity } from "./_proc.ts";
import type { HotFunction, Inspector } from "./_profile.ts";
import type { Spec } from "./loadgen.ts";

/** A figure in the JSON line. */
export type Figure = number | string | boolean | null | string[] | Record<string, string>;

/** `bench/`, with a trailing slash. */
export const BENCH_DIR = new URL(".", import.meta.url).pathname;
/** The repository root, with a trailing slash. */
export const ROOT_DIR = new URL("../", import.meta.url).pathname;
/** This Deno, for children. */
export const DENO = Deno.execPath();

/** Every child ever started, so an interrupt can kill what is left. */
export const ALL_CHILDREN = new Set<Child>();

/** Children started by one scenario; all stopped when it ends, however it ends. */
export class Scope {
  readonly #children: Child[] = [];

  /** Starts a Deno script of `bench/` with the given permissions. */
  deno(
    name: string,
    script: string,
    perms: string[],
    args: string[],
    opts: { stderrFile?: string; stdin?: boolean } = {},
  ): Child {
    const c = Child.spawn(DENO, ["run", ...perms, BENCH_DIR + script, ...args], { name, cwd: ROOT_DIR, ...opts });
    this.#children.push(c);
    ALL_CHILDREN.add(c);
    return c;
  }

  /** Stops `c` with the others (a child started some other way). */
  adopt(c: Child): void {
    this.#children.push(c);
    ALL_CHILDREN.add(c);
  }

  /** Stops every child. */
  async close(): Promise<void> {
    await Promise.allSettled(this.#children.map((c) => c.stop()));
  }
}

/** A running relay process. */
export interface RelayProc {
  child: Child;
  port: number;
  metricsPort: number;
  inspector: Inspector | null;
}

/** One measured load-generator run: its result and the CPU each side used while it measured. */
export interface Measured {
  res: ChildEvent;
  /** Server CPU seconds in the measuring window. */
  serverCpu: number;
  /** Load generator CPU seconds in the measuring window. */
  genCpu: number;
  /** Wall seconds of the measuring window. */
  wall: number;
}

/**
 * Runs a load generator to completion. It reads its own and the server's
 * CPU time from `/proc` at the exact edges of its measuring window. With
 * `cpus`, the load generator is pinned to those CPUs.
 */
export async function measured(
  scope: Scope,
  name: string,
  spec: Spec,
  serverPid: number,
  timeoutMs: number,
  opts: { cpus?: string } = {},
): Promise<Measured> {
  const gen = scope.deno(name, "loadgen.ts", ["-A"], [JSON.stringify({ ...spec, serverPid })]);
  try {
    if (opts.cpus !== undefined) {
      // Pinned before it has made its keys, so the whole measuring window runs on those CPUs.
      const err = await setAffinity(gen.pid, opts.cpus);
      if (err !== null) throw new Error(`pinning the load generator to CPU ${opts.cpus}: ${err}`);
    }
    const res = await gen.waitEvent("result", timeoutMs);
    return { res, serverCpu: num(res.server_cpu_s), genCpu: num(res.gen_cpu_s), wall: num(res.wall_s) };
  } finally {
    await gen.stop();
  }
}

/** Reads the relay's OpenMetrics text. */
export async function scrape(port: number): Promise<string> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
    return await res.text();
  } catch (e) {
    throw new Error(`relay metrics endpoint 127.0.0.1:${port} did not answer: ${(e as Error).message}`);
  }
}

/** A counter or gauge value from OpenMetrics text (sum over label sets), or NaN. */
export function metric(text: string, name: string): number {
  let sum = NaN;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) {
    sum = (isNaN(sum) ? 0 : sum) + Number(m[1]);
  }
  return sum;
}

/** A JSON figure as a number; null (how JSON carries NaN) and absent values are NaN, not 0. */
export const num = (
  v: unknown,
): number => (typeof v === "number" ? v : v === null || v === undefined ? NaN : Number(v));
/** `v` to `digits` decimals (NaN stays NaN). */
export const round = (v: number, digits = 2): number => (Number.isFinite(v) ? Number(v.toFixed(digits)) : NaN);
/** Geometric mean. */
export const geomean = (xs: number[]): number => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);

/**
 * Runs `fn` with a time limit; a failure or timeout is recorded under `name`
 * and does not stop the run. `fn` starts its processes in the scope it is
 * given, which is closed when it ends or times out: killing its children
 * makes a timed-out `fn` fail fast instead of running on in the background.
 */
export async function guarded(
  run: Recorder,
  name: string,
  timeoutMs: number,
  fn: (scope: Scope) => Promise<void>,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t0 = performance.now();
  const scope = new Scope();
  const work = fn(scope);
  try {
    await Promise.race([
      work,
      new Promise<never>((_, rej) =>
        timer = setTimeout(() => rej(new Error(`timed out after ${Math.round(timeoutMs / 1000)} s`)), timeoutMs)
      ),
    ]);
  } catch (e) {
    run.errors[name] = (e as Error).message;
    console.error(`bench: ${name} failed: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
    await scope.close();
    // A timed-out `fn` now fails on its dead children; wait (bounded) so it cannot touch the next scenario.
    await Promise.race([work.catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
    run.fig[`seconds_${name}`] = round((performance.now() - t0) / 1000, 1);
  }
}

/** Right-aligns `s` in `n` columns. */
export function pad(s: string | number, n: number): string {
  const t = String(s);
  return t.length >= n ? t : " ".repeat(n - t.length) + t;
}

/** A figure for the table: grouped digits, "-" when absent. */
export function fmt(v: Figure | undefined, digits = 0): string {
  if (v === undefined || v === null) return "-";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) return "-";
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  return String(v);
}

/** "ok" or "MISS" for a figure against a target test, "-" when absent. */
export function verdict(v: Figure | undefined, ok: (x: number) => boolean): string {
  return typeof v === "number" && Number.isFinite(v) ? (ok(v) ? "ok" : "MISS") : "-";
}

/** Where a scenario records figures and failures. */
export interface Recorder {
  readonly fig: Record<string, Figure>;
  readonly errors: Record<string, string>;
}

/** What a scenario gets from the run (`main.ts`'s `Run`). */
export interface RunContext extends Recorder {
  readonly opts: { readonly quick: boolean; readonly cpuProf: boolean };
  readonly skipped: Record<string, string>;
  readonly profiles: Record<string, HotFunction[]>;
  readonly resultsDir: string;
  /** Starts a relay (`relay_server.ts`) in `scope`; `extra` adds TOML tables and permissions. */
  startRelay(scope: Scope, name: string, extra?: { toml?: string; perms?: string[] }): Promise<RelayProc>;
  /** Runs `fn` under a CPU profile of `relay` when profiling is on. */
  profiled<T>(relay: RelayProc, label: string, fn: () => Promise<T>): Promise<T>;
}
