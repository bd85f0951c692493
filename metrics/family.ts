/**
 * @module
 * Metric families rendered under their own full name, without a service
 * prefix: the names the hardening contract fixes for outbound links and
 * logging (`redis_reconnects_total`, `access_http_checks_in_flight`,
 * `access_http_failures_total{reason}`, `log_lines_suppressed_total`),
 * which belong to no one service's `relayserver_` or `imap_` group.
 */

/** A family read at scrape time. */
export interface Family {
  /** Family name; a counter's sample gets `_total` appended. */
  name: string;
  /** OpenMetrics type. */
  type: "counter" | "gauge";
  /** Help text. */
  help: string;
  /** Label sets and their current values. */
  read: () => [labels: Record<string, string>, value: number][];
}

/**
 * OpenMetrics text of `families`, without the final `# EOF`.
 *
 * @example
 * ```ts
 * import { renderFamilies } from "./family.ts";
 * const text = renderFamilies([{ name: "redis_reconnects", type: "counter", help: "Reconnects", read: () => [[{}, 3]] }]);
 * if (!text.includes("\nredis_reconnects_total 3\n")) throw new Error("bad text");
 * ```
 */
export function renderFamilies(families: readonly Family[]): string {
  let out = "";
  for (const f of families) {
    out += `# HELP ${f.name} ${f.help}.\n# TYPE ${f.name} ${f.type}\n`;
    const sample = f.type === "counter" ? `${f.name}_total` : f.name;
    for (const [labels, v] of f.read()) {
      const l = Object.entries(labels).map(([k, val]) => `${k}="${val}"`).join(",");
      out += `${sample}${l ? `{${l}}` : ""} ${v}\n`;
    }
  }
  return out;
}
