/**
 * @module
 * Which text format a scraper gets: OpenMetrics 1.0.0 when its `Accept`
 * header asks for `application/openmetrics-text` (Prometheus does), else the
 * Prometheus text format 0.0.4 that any other client or `curl` can read.
 * Our renderers write OpenMetrics; {@link toPrometheusText} turns that
 * into the older format (family names of counters and infos carry their
 * sample suffix there, `info` becomes `gauge`, no `# EOF`). Pure.
 */

/** A metrics text format. */
export type MetricsFormat = "openmetrics" | "prometheus";

/** `Content-Type` of each format. */
export const CONTENT_TYPE: Readonly<Record<MetricsFormat, string>> = {
  openmetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8",
  prometheus: "text/plain; version=0.0.4; charset=utf-8",
};

/**
 * The format for an `Accept` header: OpenMetrics when it lists
 * `application/openmetrics-text` with a non-zero quality at least that of
 * `text/plain`.
 */
export function negotiateFormat(accept: string | null | undefined): MetricsFormat {
  if (!accept) return "prometheus";
  let om = -1, plain = -1;
  for (const part of accept.split(",")) {
    const [type, ...params] = part.split(";").map((s) => s.trim().toLowerCase());
    const qp = params.find((p) => p.startsWith("q="));
    const q = qp === undefined ? 1 : Number(qp.slice(2));
    if (!Number.isFinite(q)) continue;
    if (type === "application/openmetrics-text") om = Math.max(om, q);
    else if (type === "text/plain") plain = Math.max(plain, q);
  }
  return om > 0 && om >= plain ? "openmetrics" : "prometheus";
}

const SUFFIX: Readonly<Record<string, string>> = { counter: "_total", info: "_info" };

/**
 * Rewrites OpenMetrics text (as our renderers write it: `# HELP`/`# TYPE`
 * before each family, no exemplars) as Prometheus text format 0.0.4.
 */
export function toPrometheusText(openMetrics: string): string {
  const renamed = new Map<string, [string, string]>();
  for (const m of openMetrics.matchAll(/^# TYPE (\S+) (counter|info)$/gm)) {
    renamed.set(m[1]!, [m[1]! + SUFFIX[m[2]!], m[2] === "info" ? "gauge" : "counter"]);
  }
  const out: string[] = [];
  for (const line of openMetrics.split("\n")) {
    if (line === "# EOF" || line.startsWith("# UNIT ")) continue;
    const meta = /^# (HELP|TYPE) (\S+)(.*)$/.exec(line);
    const target = meta ? renamed.get(meta[2]!) : undefined;
    if (meta && target) {
      out.push(meta[1] === "TYPE" ? `# TYPE ${target[0]} ${target[1]}` : `# HELP ${target[0]}${meta[3]}`);
    } else {
      out.push(line);
    }
  }
  return out.join("\n");
}
