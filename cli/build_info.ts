/**
 * @module
 * Which build this is: the version from `deno.json` and the git revision,
 * shown by `--version`, the health endpoint and the build-info metric.
 */

import denoJson from "../deno.json" with { type: "json" };

/** Our version, from `deno.json`. */
export const VERSION: string = denoJson.version;

/**
 * Git revision: in a compiled binary, from the `build-info.json` that
 * `deno task compile` embeds; else `RELAY_GIT_HASH`; else "unknown". A
 * source run never reads `dist/`, so a build left there cannot lend it a
 * stale revision.
 */
export const GIT_HASH: string = (() => {
  if (Deno.build.standalone) {
    try {
      const info = JSON.parse(Deno.readTextFileSync(new URL("../dist/build-info.json", import.meta.url)));
      if (typeof info.git === "string") return info.git;
    } catch {
      // built without build info
    }
  }
  try {
    return Deno.env.get("RELAY_GIT_HASH") ?? "unknown";
  } catch {
    return "unknown";
  }
})();
