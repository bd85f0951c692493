/**
 * @module
 * Starts a real relay plus the IMAP service from TOML, as `main.ts` would,
 * for socket tests. The IMAP config is built after the relay is listening,
 * so `iroh_relay_url` can name the relay's real port.
 */

import assert from "node:assert/strict";
import { configFromText } from "../../config/mod.ts";
import { type ImapService, startImap } from "../../imap_metadata/mod.ts";
import { silentLogger } from "../../log/mod.ts";
import { type RelayService, startRelay } from "../../relay/mod.ts";

/** Test TLS material (see tests/fixtures/imap_tls/README.md). */
export const TLS_DIR = new URL("../fixtures/imap_tls/", import.meta.url).pathname;
/** The test CA certificate (PEM). */
export const CA_PEM = await Deno.readTextFile(`${TLS_DIR}ca.pem`);

/** A running relay + IMAP service. */
export interface Stack {
  relay: RelayService;
  imap: ImapService;
  /** The advertised relay URL, `http://127.0.0.1:<port>/`. */
  relayUrl: string;
  close(): Promise<void>;
}

/**
 * Starts the relay on a free loopback port, then IMAP with `[imap]` TOML
 * produced by `imapToml(relayUrl)`.
 */
export async function startStack(imapToml: (relayUrl: string) => string): Promise<Stack> {
  const { config: relayCfg } = configFromText('http_bind_addr = "127.0.0.1:0"\nenable_metrics = false', "relay.toml");
  const relay = await startRelay(relayCfg);
  const relayUrl = `http://127.0.0.1:${relay.httpAddr!.port}/`;
  let imap: ImapService;
  try {
    const { config } = configFromText(imapToml(relayUrl), "imap.toml");
    imap = await startImap(config, { log: silentLogger });
  } catch (e) {
    await relay.close();
    throw e;
  }
  return {
    relay,
    imap,
    relayUrl,
    async close() {
      await imap.close();
      await relay.close();
    },
  };
}

/** Asserts that `url` is a live relay: `GET <url>ping` answers 200. */
export async function assertRelayAnswers(url: string): Promise<void> {
  const res = await fetch(new URL("ping", url));
  await res.body?.cancel();
  assert.equal(res.status, 200, `GET ${url}ping`);
}

/** Runs a command; returns exit code, stdout and stderr. */
export async function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", stdin: "null" }).spawn();
  const id = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, opts.timeoutMs ?? 20_000);
  const out = await child.output();
  clearTimeout(id);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Path of the imaplib probe script. */
export const PROBE = new URL("./imap_probe.py", import.meta.url).pathname;

/** What `imap_probe.py` prints. */
export interface ProbeResult {
  login_typ: string;
  login_data: string[];
  capabilities?: string[];
  typ?: string;
  data?: string[];
  raw?: string;
  entries?: Record<string, string | null>;
  select?: { typ: string; exists: string; uidvalidity: string[]; uidnext: string[] };
}

/** Runs Python imaplib against a server (spec §7). */
export async function imaplibProbe(
  port: number,
  opts: {
    tls: boolean;
    user: string;
    password: string;
    how: "login" | "authenticate";
    variant: "v2.57" | "v2.59" | "single";
  },
): Promise<ProbeResult> {
  const r = await run("python3", [
    PROBE,
    "127.0.0.1",
    String(port),
    opts.tls ? "tls" : "plain",
    opts.user,
    opts.password,
    opts.how,
    opts.variant,
  ]);
  assert.equal(r.code, 0, `imap_probe.py failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ProbeResult;
}

/** Runs curl's IMAP client with a custom command and returns the `< …` server lines from `-v` (spec §7). */
export async function curlImap(
  url: string,
  userpass: string,
  command: string,
): Promise<{ code: number; serverLines: string[]; stderr: string }> {
  const r = await run("curl", ["-sv", "--max-time", "15", "-k", url, "-u", userpass, "-X", command]);
  const serverLines = r.stderr.split("\n").filter((l) => l.startsWith("< ")).map((l) => l.slice(2).replace(/\r$/, ""));
  return { code: r.code, serverLines, stderr: r.stderr };
}
