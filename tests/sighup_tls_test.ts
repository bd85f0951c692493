/**
 * Issue 13 bug 1, on the real process: SIGHUP re-reads the IMAPS
 * certificate as well as the HTTPS relay's, and "TLS certificate reloaded"
 * is logged only when a certificate really was reloaded (never without TLS,
 * never after "config reload failed").
 */

import assert from "node:assert/strict";
import { withTimeout } from "./support/relay_scope.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
/** Certificate A: self-signed `localhost`. */
const A = { cert: `${FIXTURES}localhost.crt`, key: `${FIXTURES}localhost.key`, ca: `${FIXTURES}localhost.crt` };
/** Certificate B: a leaf for `localhost` from the test CA. */
const B = {
  cert: `${FIXTURES}imap_tls/cert.pem`,
  key: `${FIXTURES}imap_tls/key.pem`,
  ca: `${FIXTURES}imap_tls/ca.pem`,
};

/** main.ts with its stderr collected. */
class Proc {
  readonly child: Deno.ChildProcess;
  log = "";
  #wake: (() => void)[] = [];

  constructor(config: string) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "--config", config],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.child = child;
    (async () => {
      for await (const t of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.log += t;
        for (const w of this.#wake.splice(0)) w();
      }
    })();
  }

  async waitFor(re: RegExp, from = 0): Promise<RegExpExecArray> {
    return await withTimeout(
      (async () => {
        for (;;) {
          const m = re.exec(this.log.slice(from));
          if (m) return m;
          await new Promise<void>((r) => this.#wake.push(r));
        }
      })(),
      20_000,
      `log line ${re}; log so far:\n${this.log}`,
    );
  }

  /** Sends SIGHUP and returns the log written until the reload finished. */
  async hup(): Promise<string> {
    const mark = this.log.length;
    this.child.kill("SIGHUP");
    await this.waitFor(/SIGHUP: reload done/, mark);
    return this.log.slice(mark);
  }

  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // gone
    }
    await this.child.status;
  }
}

/** Handshakes with the IMAPS port trusting only `caFile`, returns the greeting. */
async function imapsGreeting(port: number, caFile: string): Promise<string> {
  const c = await Deno.connectTls({ hostname: "localhost", port, caCerts: [await Deno.readTextFile(caFile)] });
  try {
    const buf = new Uint8Array(512);
    const n = await c.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0));
  } finally {
    c.close();
  }
}

Deno.test("SIGHUP reloads the IMAPS certificate too, and says so per listener", async () => {
  const dir = await Deno.makeTempDir();
  const [rc, rk, ic, ik] = ["relay.crt", "relay.key", "imap.crt", "imap.key"].map((f) => `${dir}/${f}`);
  await Deno.copyFile(A.cert, rc!);
  await Deno.copyFile(A.key, rk!);
  await Deno.copyFile(A.cert, ic!);
  await Deno.copyFile(A.key, ik!);
  const config = `${dir}/c.toml`;
  await Deno.writeTextFile(
    config,
    `http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\nenable_stun = false\n` +
      `[tls]\ncert_mode = "Manual"\nhttps_bind_addr = "127.0.0.1:0"\nmanual_cert_path = "${rc}"\nmanual_key_path = "${rk}"\n` +
      `[imap]\ntls_bind_addr = "127.0.0.1:0"\ncert_path = "${ic}"\nkey_path = "${ik}"\n` +
      `iroh_relay_url = "https://localhost/"\n`,
  );
  const p = new Proc(config);
  try {
    const imaps = Number((await p.waitFor(/imaps:\/\/127\.0\.0\.1:(\d+)/))[1]);
    await p.waitFor(/running/);
    assert.match(await imapsGreeting(imaps, A.ca), /^\* OK/);
    // Renewal of the IMAPS files only: after SIGHUP port 993 serves B.
    await Deno.copyFile(B.cert, ic!);
    await Deno.copyFile(B.key, ik!);
    const out = await p.hup();
    assert.match(out, /TLS certificate reloaded \(imaps\)/);
    assert.match(out, /TLS certificate reloaded \(relay https\)/);
    assert.match(await imapsGreeting(imaps, B.ca), /^\* OK/);
    await assert.rejects(imapsGreeting(imaps, A.ca), "the old IMAPS certificate is no longer served");
    // A broken IMAPS file: an error for imaps, B stays.
    await Deno.writeTextFile(ic!, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n");
    const bad = await p.hup();
    assert.match(bad, /TLS reload failed, keeping the old certificate \(imaps: /);
    assert.doesNotMatch(bad, /TLS certificate reloaded \(imaps\)/);
    assert.match(await imapsGreeting(imaps, B.ca), /^\* OK/);
    // A config that no longer validates changes nothing, and no "reloaded" line follows it.
    await Deno.copyFile(B.cert, ic!);
    const good = await Deno.readTextFile(config);
    await Deno.writeTextFile(config, good.replace(`http_bind_addr = "127.0.0.1:0"`, `http_bind_addr = "nonsense"`));
    const broken = await p.hup();
    assert.match(broken, /config reload failed/);
    assert.doesNotMatch(broken, /TLS certificate reloaded/);
  } finally {
    await p.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGHUP without any TLS listener logs no 'TLS certificate reloaded'", async () => {
  const dir = await Deno.makeTempDir();
  const config = `${dir}/c.toml`;
  await Deno.writeTextFile(config, `http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\nenable_stun = false\n`);
  const p = new Proc(config);
  try {
    await p.waitFor(/running/);
    const out = await p.hup();
    assert.match(out, /access control reloaded/);
    assert.doesNotMatch(out, /TLS certificate reloaded|TLS reload failed/);
  } finally {
    await p.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
