/**
 * @module
 * Discovery scenario of `deno task bench` (issue 11): three processes, the
 * server (`discovery_server.ts`: relay listener + DNS, as `main.ts` runs
 * them), the UDP echo baseline (`baseline_udp_echo.ts`) and the load
 * generator (`discovery_loadgen.ts`). Figures:
 * - `pkarr_puts_per_s`: signed PUTs stored per second (signature checks
 *   and SQLite writes included), target ≥ 3,000; `pkarr_cpu_us_per_put`
 *   the server's CPU time per PUT (the generator's fetch client shares
 *   the two cores, so the rate also depends on it);
 * - `dns_qps`: UDP TXT queries answered per second from the warm store;
 *   `dns_echo_qps` the echo baseline in the same run; `dns_ratio` = ours ÷
 *   echo, target ≥ 0.5 (best round of each, rounds alternating);
 * - `dns_cpu_us_per_query` / `dns_echo_cpu_us_per_query`: server CPU time
 *   per answered query, ours and the echo's (least in any round).
 */

/** Sizes per plan. */
const PLANS = {
  full: { keys: 20_000, putConcurrency: 64, sockets: 8, window: 16, measureMs: 2000, rounds: 4 },
  quick: { keys: 4_000, putConcurrency: 64, sockets: 8, window: 16, measureMs: 700, rounds: 3 },
};

/** Targets from the issue. */
export const DISCOVERY_TARGETS = { putsPerS: 3000, dnsRatio: 0.5 };

const DIR = new URL(".", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url).pathname;

/** A child that prints one JSON line when ready; stdin kept open so closing it stops the child. */
async function start(script: string): Promise<{ child: Deno.ChildProcess; ready: Record<string, number> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", DIR + script],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${script} exited before listening`);
    buf += value;
    const nl = buf.indexOf("\n");
    if (nl >= 0) {
      reader.releaseLock();
      child.stdout.cancel().catch(() => {});
      return { child, ready: JSON.parse(buf.slice(0, nl)) };
    }
  }
}

async function stop(c: Deno.ChildProcess): Promise<void> {
  await c.stdin.close().catch(() => {});
  const t = setTimeout(() => c.kill("SIGKILL"), 5000);
  await c.status;
  clearTimeout(t);
}

/** Runs the scenario; returns the figures for the JSON line. */
export async function runDiscoveryBench(quick: boolean): Promise<Record<string, number>> {
  const plan = quick ? PLANS.quick : PLANS.full;
  const server = await start("discovery_server.ts");
  const echo = await start("baseline_udp_echo.ts").catch(async (e) => {
    await stop(server.child);
    throw e;
  });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        DIR + "discovery_loadgen.ts",
        JSON.stringify({
          ...plan,
          http: server.ready.http,
          dns: server.ready.dns,
          echo: echo.ready.port,
          dnsPid: server.child.pid,
          echoPid: echo.child.pid,
        }),
      ],
      cwd: ROOT,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error(`discovery load generator failed (${out.code})`);
    const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
    if (r.puts_bad > 0) throw new Error(`${r.puts_bad} of ${r.puts} PUTs were not answered 204`);
    if (r.dns_wrong > 0) throw new Error(`${r.dns_wrong} sampled DNS replies were wrong`);
    return {
      pkarr_puts_per_s: Math.round(r.puts_per_s),
      pkarr_cpu_us_per_put: Math.round(r.put_cpu_us),
      dns_qps: Math.round(r.dns_qps),
      dns_echo_qps: Math.round(r.echo_qps),
      dns_ratio: Math.round((r.dns_qps / r.echo_qps) * 100) / 100,
      dns_cpu_us_per_query: Math.round(r.dns_cpu_us * 10) / 10,
      dns_echo_cpu_us_per_query: Math.round(r.echo_cpu_us * 10) / 10,
    };
  } finally {
    await Promise.all([stop(server.child), stop(echo.child)]);
  }
}

if (import.meta.main) console.log(JSON.stringify(await runDiscoveryBench(Deno.args.includes("--quick"))));
