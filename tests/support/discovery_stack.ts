/**
 * @module
 * A relay with discovery in this process for tests: the relay listener on
 * 127.0.0.1 (port 0) serving `/pkarr` and `/dns-query`, DNS on UDP+TCP
 * (port 0), a SQLite store in a temporary directory (or a given Redis), and
 * helpers to run `dig` and `curl` against it.
 */

import { configFromText } from "../../config/mod.ts";
import { type DiscoveryHandle, startDiscovery } from "../../discovery/mod.ts";
import { type RelayService, startRelay } from "../../relay/mod.ts";

/** A running stack. */
export interface DiscoveryStack {
  relay: RelayService;
  discovery: DiscoveryHandle;
  /** `http://127.0.0.1:<port>` of the relay listener. */
  base: string;
  /** DNS port (UDP and TCP) on 127.0.0.1. */
  dnsPort: number;
  /** The SQLite directory, if any. */
  dir?: string;
  close(): Promise<void>;
}

/** Starts a stack; `extra` is appended inside `[discovery]`. */
export async function startDiscoveryStack(extra = "", opts: { dir?: string } = {}): Promise<DiscoveryStack> {
  const dir = extra.includes('store = "redis"') ? undefined : opts.dir ?? await Deno.makeTempDir({ prefix: "disc-" });
  const text = [
    'http_bind_addr = "127.0.0.1:0"',
    "enable_metrics = false",
    "[discovery]",
    'dns_bind_addr = "127.0.0.1:0"',
    ...(dir ? [`data_dir = ${JSON.stringify(dir)}`] : []),
    extra,
  ].join("\n");
  const { config } = configFromText(text, "test");
  const discovery = await startDiscovery(config.discovery!);
  const relay = await startRelay(config, { routes: discovery.routes });
  return {
    relay,
    discovery,
    base: `http://127.0.0.1:${relay.httpAddr!.port}`,
    dnsPort: discovery.dns!.addr.port,
    ...(dir ? { dir } : {}),
    async close() {
      await relay.close();
      await discovery.close();
      if (dir && !opts.dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs a command, returns stdout (throws with stderr on failure). */
export async function run(cmd: string, args: string[], stdin?: Uint8Array): Promise<string> {
  const c = new Deno.Command(cmd, { args, stdin: stdin ? "piped" : "null", stdout: "piped", stderr: "piped" }).spawn();
  if (stdin) {
    const w = c.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await c.output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}${text}`);
  return text;
}

/** Installs Debian's `dig` if missing (root, as the other test dependencies). */
export async function ensureDig(): Promise<void> {
  try {
    await run("dig", ["-v"]);
    return;
  } catch {
    // missing
  }
  try {
    await run("apt-get", ["install", "-y", "-qq", "bind9-dnsutils"]);
  } catch {
    await run("apt-get", ["update", "-qq"]);
    await run("apt-get", ["install", "-y", "-qq", "bind9-dnsutils"]);
  }
}

/** One answer line of `dig +noall +answer`: name, ttl, class, type, data. */
export interface DigRecord {
  name: string;
  ttl: number;
  type: string;
  data: string;
}

/** Parses `dig +noall +answer` output. */
export function parseDig(text: string): DigRecord[] {
  return text.split("\n").filter((l) => l.trim() && !l.startsWith(";")).map((l) => {
    const [name, ttl, , type, ...rest] = l.split(/\s+/);
    return { name: name!, ttl: Number(ttl), type: type!, data: rest.join(" ") };
  });
}
