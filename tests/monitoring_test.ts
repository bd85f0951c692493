/**
 * Monitoring as an operator wires it up: the metrics endpoint of a running
 * main.ts (relay + IMAP) serves OpenMetrics to a scraper that asks for it
 * and the Prometheus text format otherwise, with `process_*` and a build
 * info metric; and every metric the shipped Grafana dashboard and
 * Prometheus alert rules use exists in that output. Where `promtool`
 * (Debian `prometheus`) and Python's `prometheus_client` (Debian
 * `python3-prometheus-client`) are installed, they check both formats and
 * the rules file too; without them those checks are skipped, saying so.
 */

import assert from "node:assert/strict";
import { MainProcess } from "./support/main_process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const OM_ACCEPT = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75," +
  "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"; // what Prometheus 2.x sends

/** Series Prometheus makes itself, not scraped from us. */
const PROMETHEUS_MADE = new Set(["up"]);

/** PromQL functions, aggregations and keywords our expressions may use (anything else is taken for a metric). */
const PROMQL_WORDS = new Set([
  "sum",
  "min",
  "max",
  "avg",
  "count",
  "topk",
  "bottomk",
  "rate",
  "irate",
  "increase",
  "changes",
  "delta",
  "deriv",
  "time",
  "clamp_min",
  "clamp_max",
  "absent",
  "absent_over_time",
  "max_over_time",
  "min_over_time",
  "avg_over_time",
  "label_values",
  "and",
  "or",
  "unless",
  "bool",
  "offset",
]);

/** Metric names in a PromQL expression: identifiers outside label matchers, ranges, groupings and strings. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "")
    .replace(/\$\w+/g, "");
  const names = new Set<string>();
  for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    if (!PROMQL_WORDS.has(m[0])) names.add(m[0]);
  }
  return [...names];
}

/** `expr:` values of our alert rules file (single line, or a `|` block). */
function alertExprs(yaml: string): string[] {
  const out: string[] = [];
  const lines = yaml.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)expr:\s*(.*)$/.exec(lines[i]!);
    if (!m) continue;
    if (m[2] !== "|") {
      out.push(m[2]!);
      continue;
    }
    const block: string[] = [];
    while (i + 1 < lines.length && (lines[i + 1]!.trim() === "" || lines[i + 1]!.search(/\S/) > m[1]!.length)) {
      block.push(lines[++i]!.trim());
    }
    out.push(block.join(" "));
  }
  return out;
}

/** Every `expr` in a Grafana dashboard (panels and their targets). */
function dashboardExprs(dashboard: unknown): string[] {
  const out: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === "object" && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        if (k === "expr" && typeof x === "string") out.push(x);
        else walk(x);
      }
    }
  };
  walk(dashboard);
  return out;
}

/** Sample names of a text exposition. */
function sampleNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]/.exec(line);
    if (m) names.add(m[1]!);
  }
  return names;
}

/** Starts main.ts with the relay, metrics, STUN, IMAP and the mailbox on loopback; returns both scrapes. */
async function scrapeMain(): Promise<{ prom: Response; promText: string; om: Response; omText: string }> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/r.toml`,
    'http_bind_addr = "127.0.0.1:0"\nmetrics_bind_addr = "127.0.0.1:0"\nstun_bind_addr = "127.0.0.1:0"\n' +
      `[imap]\nbind_addr = "127.0.0.1:0"\n[mailbox]\nserver_names = ["relay.example"]\ndata_dir = "${dir}/mailbox"\n`,
  );
  const main = new MainProcess(["--config", `${dir}/r.toml`]);
  try {
    const url = (await main.waitFor(/metrics on (http:\/\/\S+)/))[1]!;
    await main.waitFor(/running/);
    const prom = await fetch(url);
    const promText = await prom.text();
    const om = await fetch(url, { headers: { Accept: OM_ACCEPT } });
    const omText = await om.text();
    return { prom, promText, om, omText };
  } finally {
    await main.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

const scraped = await scrapeMain();

async function tool(cmd: string, args: string[], stdin?: string): Promise<{ ok: boolean; out: string } | undefined> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    })
      .spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { ok: out.success, out: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

Deno.test("metrics: Prometheus text format by default, OpenMetrics 1.0.0 when the scraper asks", () => {
  assert.equal(scraped.prom.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  assert.doesNotMatch(scraped.promText, /# EOF/);
  // Prometheus text names a counter family with its _total sample name.
  assert.match(scraped.promText, /^# TYPE relayserver_accepts_total counter\nrelayserver_accepts_total 0$/m);
  assert.equal(scraped.om.headers.get("content-type"), "application/openmetrics-text; version=1.0.0; charset=utf-8");
  assert.ok(scraped.omText.endsWith("# EOF\n"));
  assert.match(scraped.omText, /^# TYPE relayserver_accepts counter\nrelayserver_accepts_total 0$/m);
  assert.match(scraped.omText, /^# TYPE iroh_relay_deno_build info$/m);
  assert.deepEqual(sampleNames(scraped.promText), sampleNames(scraped.omText), "the same samples in both formats");
});

Deno.test("metrics: process_* and build info are served with plausible values", () => {
  const value = (name: string) =>
    Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(scraped.promText)?.[1]);
  assert.ok(value("process_resident_memory_bytes") > 10 * 1024 * 1024, "resident memory");
  assert.ok(value("process_cpu_seconds_total") > 0, "CPU seconds");
  assert.ok(value("process_open_fds") > 3, "open fds");
  assert.ok(value("process_max_fds") >= value("process_open_fds"), "fd limit");
  const started = value("process_start_time_seconds");
  assert.ok(started > Date.now() / 1000 - 120 && started <= Date.now() / 1000, `start time ${started}`);
  assert.match(
    scraped.promText,
    /^iroh_relay_deno_build_info\{version="\d+\.\d+\.\d+",git="[^"]+",deno="\d+\.\d+\.\d+"\} 1$/m,
  );
});

Deno.test("metrics: every metric the Grafana dashboard and the alert rules use is served", async () => {
  const served = sampleNames(scraped.promText);
  const dashboard = JSON.parse(await Deno.readTextFile(`${ROOT}deploy/grafana-dashboard.json`));
  const alerts = await Deno.readTextFile(`${ROOT}deploy/prometheus-alerts.yml`);
  const sources: [string, string[]][] = [["grafana-dashboard.json", dashboardExprs(dashboard)], [
    "prometheus-alerts.yml",
    alertExprs(alerts),
  ]];
  for (const [file, exprs] of sources) {
    assert.ok(exprs.length >= 5, `${file}: expressions found`);
    const used = new Set(exprs.flatMap(metricNames));
    const missing = [...used].filter((n) => !served.has(n) && !PROMETHEUS_MADE.has(n));
    assert.deepEqual(missing, [], `${file} uses metrics we do not serve`);
    assert.ok([...used].some((n) => n.startsWith("relayserver_")) && [...used].some((n) => n.startsWith("imap_")));
  }
  // The extraction itself: a misspelled metric is caught, labels and functions are not taken for metrics.
  assert.deepEqual(
    metricNames('sum by (instance) (rate(relayserver_acepts_total{job=~"$job",x="a b"}[5m])) / up > bool 0'),
    ["relayserver_acepts_total", "up"],
  );
});

Deno.test("metrics: promtool and prometheus_client accept the output and the rules, where installed", async (t) => {
  await t.step("promtool check metrics (text format)", async () => {
    const r = await tool("promtool", ["check", "metrics"], scraped.promText);
    if (!r) return console.log("monitoring_test: promtool not installed (apt install prometheus), skipped");
    assert.ok(r.ok, r.out);
  });
  await t.step("promtool check rules", async () => {
    const r = await tool("promtool", ["check", "rules", `${ROOT}deploy/prometheus-alerts.yml`]);
    if (!r) return;
    assert.ok(r.ok, r.out);
    assert.match(r.out, /SUCCESS: \d+ rules found/);
  });
  await t.step("prometheus_client parses the OpenMetrics output", async () => {
    const script =
      "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n" +
      "print(len(list(p(sys.stdin.read()))))";
    const r = await tool("/usr/bin/python3", ["-c", script], scraped.omText);
    if (!r || /No module named/.test(r.out)) {
      return console.log("monitoring_test: python3-prometheus-client not installed, OpenMetrics parse skipped");
    }
    assert.ok(r.ok, r.out);
    assert.ok(Number(r.out.trim()) > 40, r.out);
  });
});

Deno.test({
  name: "metrics: running out of file descriptors is counted in relayserver_accept_errors_total",
  // prlimit (util-linux) caps the child's descriptors; without it the test says so and is skipped.
  ignore: await tool("prlimit", ["--version"]).then((r) => r === undefined),
  async fn() {
    const dir = await Deno.makeTempDir();
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    await Deno.writeTextFile(
      `${dir}/r.toml`,
      `http_bind_addr = "127.0.0.1:${port}"\nmetrics_bind_addr = "127.0.0.1:0"\nenable_stun = false\n`,
    );
    const main = new MainProcess(["--config", `${dir}/r.toml`], ["prlimit", "--nofile=48:48"]);
    const conns: Deno.Conn[] = [];
    try {
      const url = (await main.waitFor(/metrics on (http:\/\/\S+)/))[1]!;
      await main.waitFor(/running/);
      // More connections than descriptors: the kernel queues them, the relay's accepts fail.
      for (let i = 0; i < 80; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      await main.waitFor(/accept failed: Too many open files/, 0, 10_000);
      for (const c of conns.splice(0)) c.close();
      // Freed descriptors first go to connections still queued; retry the scrape a bounded number of times.
      let text = "";
      for (let i = 0; i < 50 && !text; i++) {
        text = await fetch(url).then((r) => r.text(), () => "");
        if (!text) await new Promise((r) => setTimeout(r, 100));
      }
      const errors = Number(/^relayserver_accept_errors_total (\d+)$/m.exec(text)?.[1]);
      assert.ok(errors > 0, `accept errors ${errors}\n${main.log}`);
    } finally {
      for (const c of conns) c.close();
      await main.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
