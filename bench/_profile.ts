/**
 * @module
 * CPU profiles of the relay process over the V8 inspector protocol, for
 * `main.ts --cpu-prof`. This Deno has no `--cpu-prof` flag, so the relay is
 * started with `--inspect=127.0.0.1:0` and we drive `Profiler.start/stop`
 * ourselves: one profile per scenario, saved as `.cpuprofile` (open it in
 * Chrome DevTools) and summarised as the functions with the most self time.
 */

/** The repository root as a file URL, stripped from profile locations. */
const ROOT = new URL("../", import.meta.url).href;

/** A function's share of the samples. */
export interface HotFunction {
  /** `name (file:line)`. */
  where: string;
  /** Self time, percent of all samples. */
  selfPct: number;
}

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
}

/** A `Profiler.stop` result. */
export interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  startTime: number;
  endTime: number;
}

/** Finds the inspector WebSocket URL Deno prints on stderr. */
export function inspectorUrl(stderr: string): string | null {
  return stderr.match(/ws:\/\/127\.0\.0\.1:\d+\/(?:ws\/)?[0-9a-f-]{36}/)?.[0] ?? null;
}

/** A CDP session on a Deno process. */
export class Inspector {
  readonly #ws: WebSocket;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data));
      const p = msg.id !== undefined ? this.#pending.get(msg.id) : undefined;
      if (p === undefined) return;
      this.#pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`inspector: ${msg.error.message}`));
      else p.resolve(msg.result);
    };
    ws.onclose = () => {
      for (const p of this.#pending.values()) p.reject(new Error("inspector connection closed"));
      this.#pending.clear();
    };
  }

  /** Connects to `url` and enables the profiler with a 250 µs sampling interval. */
  static async connect(url: string): Promise<Inspector> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot connect to the inspector at ${url}`));
    });
    const ins = new Inspector(ws);
    await ins.call("Profiler.enable");
    await ins.call("Profiler.setSamplingInterval", { interval: 250 });
    return ins;
  }

  /** Sends one command and waits for its result (bounded to 30 s). */
  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`inspector: ${method} timed out`));
      }, 30_000);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Starts sampling. */
  async start(): Promise<void> {
    await this.call("Profiler.start");
  }

  /** Stops sampling and returns the profile. */
  async stop(): Promise<CpuProfile> {
    const r = await this.call("Profiler.stop") as { profile: CpuProfile };
    return r.profile;
  }

  /** Closes the session. */
  close(): void {
    try {
      this.#ws.close();
    } catch {
      // already closed
    }
  }
}

/** The `n` functions with the most self time (idle and GC pseudo-frames included, by name). */
export function hotFunctions(profile: CpuProfile, n: number): HotFunction[] {
  const byNode = new Map<number, ProfileNode>();
  for (const node of profile.nodes) byNode.set(node.id, node);
  const hits = new Map<number, number>();
  if (profile.samples && profile.samples.length > 0) {
    for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  } else {
    for (const node of profile.nodes) hits.set(node.id, node.hitCount ?? 0);
  }
  let total = 0;
  const byFn = new Map<string, number>();
  for (const [id, count] of hits) {
    const f = byNode.get(id)?.callFrame;
    if (!f) continue;
    total += count;
    const file = f.url.startsWith(ROOT) ? f.url.slice(ROOT.length) : f.url.replace(/^.*\/node_modules\//, "npm:");
    const where = `${f.functionName || "(anonymous)"}${file ? ` (${file}:${f.lineNumber + 1})` : ""}`;
    byFn.set(where, (byFn.get(where) ?? 0) + count);
  }
  return [...byFn].sort((a, b) => b[1] - a[1]).slice(0, n).map(([where, count]) => ({
    where,
    selfPct: total ? (100 * count) / total : 0,
  }));
}
