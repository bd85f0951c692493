/**
 * @module
 * The discovery benchmark's server process: the relay listener with the
 * `/pkarr` and `/dns-query` routes and the UDP/TCP DNS server, built from a
 * TOML config exactly as `main.ts` builds them (SQLite store in a temporary
 * directory). Prints `{"event":"listening","http":…,"dns":…}`; exits when
 * stdin ends.
 *
 * Usage: `deno run -A bench/discovery_server.ts`
 */

import { configFromText } from "../config/mod.ts";
import { startDiscovery } from "../discovery/mod.ts";
import { startRelay } from "../relay/mod.ts";

const dir = await Deno.makeTempDir({ prefix: "bench-disc-" });
const { config } = configFromText(
  [
    'http_bind_addr = "127.0.0.1:0"',
    "enable_metrics = false",
    "[log]",
    'level = "warn"',
    "[discovery]",
    'origins = ["dns.example.org"]',
    'dns_bind_addr = "127.0.0.1:0"',
    'pkarr_put_rate_limit = "disabled"',
    `data_dir = ${JSON.stringify(dir)}`,
  ].join("\n"),
  "bench",
);
const discovery = await startDiscovery(config.discovery!);
const relay = await startRelay(config, { routes: discovery.routes });
console.log(JSON.stringify({ event: "listening", http: relay.httpAddr!.port, dns: discovery.dns!.addr.port }));
for await (const _ of Deno.stdin.readable) {
  // run until stdin ends
}
await relay.close();
await discovery.close();
await Deno.remove(dir, { recursive: true });
