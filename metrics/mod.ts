/**
 * @module
 * Counters and gauges as plain numbers, rendered as OpenMetrics text only
 * when scraped: shared by the relay (`relay/server/metrics.ts`) and the IMAP
 * listener (`imap_metadata/metrics.ts`), which the metrics endpoint serves
 * together. Counters are exposed as `<prefix>_<name>_total`.
 */

/** Counter definitions: code name → [exported name, help text]. */
export type CounterDefs = Readonly<Record<string, readonly [name: string, help: string]>>;

/** Mutable counter values, one number per definition (incremented directly on hot paths). */
export type Counts<D extends CounterDefs> = { -readonly [K in keyof D]: number };

/** A gauge read at scrape time. */
export interface Gauge {
  /** Metric name without prefix. */
  name: string;
  /** Help text. */
  help: string;
  /** Label sets and their current values. */
  read: () => [labels: Record<string, string>, value: number][];
}

/** All counters of `defs` at zero. */
export function zeroCounts<D extends CounterDefs>(defs: D): Counts<D> {
  const c = {} as Counts<D>;
  for (const k of Object.keys(defs) as (keyof D)[]) c[k] = 0;
  return c;
}

/**
 * OpenMetrics text of counters and gauges, without the final `# EOF`.
 *
 * @example
 * ```ts
 * import { renderMetrics, zeroCounts } from "./mod.ts";
 * const defs = { hits: ["hits", "Requests served"] } as const;
 * const c = zeroCounts(defs);
 * c.hits++;
 * if (!renderMetrics("demo", defs, c).includes("demo_hits_total 1")) throw new Error("bad text");
 * ```
 */
export function renderMetrics<D extends CounterDefs>(
  prefix: string,
  defs: D,
  values: Counts<D>,
  gauges: readonly Gauge[] = [],
): string {
  let out = "";
  for (const [k, [name, help]] of Object.entries(defs)) {
    const full = `${prefix}_${name}`;
    out += `# HELP ${full} ${help}.\n# TYPE ${full} counter\n${full}_total ${values[k as keyof D]}\n`;
  }
  for (const g of gauges) {
    const full = `${prefix}_${g.name}`;
    out += `# HELP ${full} ${g.help}.\n# TYPE ${full} gauge\n`;
    for (const [labels, v] of g.read()) {
      const l = Object.entries(labels).map(([k, val]) => `${k}="${val}"`).join(",");
      out += `${full}${l ? `{${l}}` : ""} ${v}\n`;
    }
  }
  return out;
}

export { type Family, renderFamilies } from "./family.ts";
export { CONTENT_TYPE, type MetricsFormat, negotiateFormat, toPrometheusText } from "./exposition.ts";
export { type BuildInfo, renderProcessMetrics } from "./process.ts";
