/**
 * @module
 * Operator-facing logs: level filter, `text` lines (`2026-11-22T10:00:00Z
 * INFO relay: …`) or one JSON object per line, always to stderr so stdout
 * stays free for machine output (`--version`, `hash-password`).
 *
 * Components get a child logger with a fixed `component` field.
 */

/** Log levels, lowest first. */
export const LEVELS = ["debug", "info", "warn", "error"] as const;
/** A log level. */
export type Level = typeof LEVELS[number];

/** What services write to. */
export interface Logger {
  /** Per-connection detail. */
  debug(msg: string): void;
  /** Normal events. */
  info(msg: string): void;
  /** Problems that do not stop the service. */
  warn(msg: string): void;
  /** Failures. */
  error(msg: string): void;
  /** A logger that tags every line with `component`. */
  child(component: string): Logger;
  /** True if `debug` lines are written: hot paths skip building messages otherwise. */
  readonly debugEnabled: boolean;
}

/** A logger that drops everything (library default). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
  debugEnabled: false,
};

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. Default `info`. */
  level?: Level;
  /** Line format. Default `text`. */
  format?: "text" | "json";
  /** Sink for finished lines (default: stderr). */
  write?: (line: string) => void;
  /** Clock (default `Date.now`). */
  now?: () => number;
}

const encoder = new TextEncoder();

function stderrWrite(line: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch {
    // stderr closed: nothing sensible to do
  }
}

/**
 * Creates a logger.
 *
 * @example
 * ```ts
 * import { createLogger } from "./mod.ts";
 * const lines: string[] = [];
 * const log = createLogger({ format: "json", write: (l) => lines.push(l) }).child("relay");
 * log.info("started");
 * if (JSON.parse(lines[0]!).component !== "relay") throw new Error("no component");
 * ```
 */
export function createLogger(opts: LoggerOptions = {}, component = "main"): Logger {
  const min = LEVELS.indexOf(opts.level ?? "info");
  const write = opts.write ?? stderrWrite;
  const now = opts.now ?? Date.now;
  const json = opts.format === "json";
  const emit = (level: Level, msg: string) => {
    if (LEVELS.indexOf(level) < min) return;
    const ts = new Date(now()).toISOString();
    write(
      json
        ? JSON.stringify({ ts, level, component, msg })
        : `${ts} ${level.toUpperCase().padEnd(5)} ${component}: ${msg}`,
    );
  };
  return {
    debug: (m) => emit("debug", m),
    info: (m) => emit("info", m),
    warn: (m) => emit("warn", m),
    error: (m) => emit("error", m),
    child: (c) => createLogger(opts, c),
    debugEnabled: min <= 0,
  };
}

export { RateLimitedLog, type RateLimitedLogOptions, suppressedLogLines } from "./rate_limited.ts";
