/**
 * @module
 * Gives memory freed after a burst back to the system. glibc keeps freed
 * blocks in its arenas rather than returning them, so after a flood of
 * connections closes, resident memory stays at its high-water mark although
 * the V8 heap and the buffers are long gone. Measured here: 2,000 hostile
 * connections opened and closed took RSS from 80 to 148 MiB; 30 s later the
 * V8 heap was back below its start but RSS stayed at 107 MiB, and one
 * `malloc_trim(0)` brought it to 78 MiB. `MALLOC_ARENA_MAX=1` with trim and
 * mmap thresholds only got it to 105 MiB.
 *
 * So every `intervalMs` (default 10 s) this calls glibc's `malloc_trim(0)`
 * through FFI (~0.1 ms). It needs `--allow-ffi` (the start tasks, the
 * compiled binary and the unit grant it); without the permission, or on a
 * libc without `malloc_trim` (musl, macOS), it does nothing and says why once
 * at debug level.
 */

import type { Logger } from "../log/mod.ts";

/** Default period between trims, ms (each costs about 0.1 ms). */
export const MALLOC_TRIM_INTERVAL_MS = 10_000;

/** A running trimmer. */
export interface MallocTrim {
  /** True if `malloc_trim` is being called. */
  readonly active: boolean;
  /** Trims done so far. */
  readonly trims: number;
  /** Trims once now (no-op when inactive). */
  trimNow(): void;
  /** Stops the timer and closes the library. */
  stop(): void;
}

/** Starts the periodic trim; see the module doc. The timer does not keep the process alive. */
export function startMallocTrim(log: Logger, intervalMs = MALLOC_TRIM_INTERVAL_MS): MallocTrim {
  const inactive = (why: string): MallocTrim => {
    log.debug(`memory trim off: ${why}`);
    return { active: false, trims: 0, trimNow() {}, stop() {} };
  };
  if (Deno.build.os !== "linux") return inactive(`not Linux (${Deno.build.os})`);
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return inactive("no --allow-ffi");
  let lib: Deno.DynamicLibrary<{ malloc_trim: { parameters: ["usize"]; result: "i32" } }>;
  try {
    lib = Deno.dlopen("libc.so.6", { malloc_trim: { parameters: ["usize"], result: "i32" } });
  } catch (e) {
    return inactive(`no glibc malloc_trim (${(e as Error).message})`);
  }
  let trims = 0;
  const trimNow = () => {
    lib.symbols.malloc_trim(0n);
    trims++;
  };
  const timer = setInterval(trimNow, intervalMs);
  Deno.unrefTimer(timer);
  return {
    active: true,
    get trims() {
      return trims;
    },
    trimNow,
    stop() {
      clearInterval(timer);
      lib.close();
    },
  };
}
