/**
 * @module
 * The standard `process_*` metrics Prometheus client libraries export
 * (resident memory and the V8 heap, CPU seconds, open and maximum file descriptors, start
 * time) and a build-info metric, as OpenMetrics text read at scrape time.
 * File descriptors come from Linux `/proc/self`, which Deno lets a program
 * read only with `--allow-all`: under the narrower permissions of the start
 * task and the compiled binary (and off Linux) those two families are left
 * out rather than reported wrong; `relayserver_accept_errors_total` shows
 * descriptor exhaustion either way.
 */

import { cpuUsage } from "node:process";

/** What the build-info metric carries as labels. */
export interface BuildInfo {
  /** Our version (deno.json). */
  version: string;
  /** Git revision, or "unknown". */
  git: string;
  /** Deno runtime version. */
  deno: string;
}

function escapeLabel(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function gauge(name: string, help: string, value: number): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name} ${value}\n`;
}

/** Open file descriptors, or undefined where `/proc/self/fd` cannot be read. */
function openFds(): number | undefined {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    // One of them is the directory handle this count itself opened.
    return Math.max(0, n - 1);
  } catch {
    return undefined;
  }
}

/** The soft limit on open files, or undefined where `/proc/self/limits` cannot be read. */
function maxFds(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
    return m && m[1] !== "unlimited" ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `process_*` families plus `<prefix>_build_info`, OpenMetrics text
 * without `# EOF`.
 *
 * @example
 * ```ts
 * import { renderProcessMetrics } from "./process.ts";
 * const text = renderProcessMetrics("iroh_relay_deno", { version: "0.1.0", git: "abc", deno: "2.9.6" });
 * if (!text.includes('iroh_relay_deno_build_info{version="0.1.0",git="abc",deno="2.9.6"} 1')) throw new Error();
 * ```
 */
export function renderProcessMetrics(prefix: string, build: BuildInfo): string {
  const cpu = cpuUsage();
  const mem = Deno.memoryUsage();
  let out = gauge("process_resident_memory_bytes", "Resident memory size in bytes.", mem.rss);
  // Where resident memory sits: the JavaScript heap, or buffers outside it (socket reads, Uint8Arrays).
  out += gauge("deno_heap_total_bytes", "V8 heap reserved, in bytes.", mem.heapTotal);
  out += gauge("deno_heap_used_bytes", "V8 heap in use, in bytes.", mem.heapUsed);
  out += gauge(
    "deno_external_memory_bytes",
    "Memory of JavaScript objects held outside the V8 heap (ArrayBuffers), in bytes.",
    mem.external,
  );
  out += "# HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n" +
    `# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total ${(cpu.user + cpu.system) / 1e6}\n`;
  const fds = openFds();
  if (fds !== undefined) out += gauge("process_open_fds", "Number of open file descriptors.", fds);
  const max = maxFds();
  if (max !== undefined) out += gauge("process_max_fds", "Maximum number of open file descriptors.", max);
  out += gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
    Math.round(performance.timeOrigin) / 1000,
  );
  const labels = `version="${escapeLabel(build.version)}",git="${escapeLabel(build.git)}",deno="${
    escapeLabel(build.deno)
  }"`;
  out += `# HELP ${prefix}_build Version, git revision and Deno version of this build.\n` +
    `# TYPE ${prefix}_build info\n${prefix}_build_info{${labels}} 1\n`;
  return out;
}
