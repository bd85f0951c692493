/**
 * The command line as an operator meets it: `--help`, `--version`, one-line
 * errors with exit code 2 for bad flags and bad config keys, `check-config`,
 * `--dev` on port 3340 with no file, and a clean SIGTERM/SIGINT shutdown
 * that closes connected clients and exits 0.
 */

import assert from "node:assert/strict";
import { connectClient } from "./support/relay_client.ts";
import { withTimeout } from "./support/relay_scope.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const DENO = Deno.execPath();

async function run(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const cmd = new Deno.Command(DENO, {
    args: ["run", "-A", MAIN, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
  const child = cmd.spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout), stderr: new TextDecoder().decode(out.stderr) };
}

async function tempToml(text: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(path, text);
  return path;
}

Deno.test("main.ts --help and --version print and exit 0", async () => {
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--config FILE/);
  const version = await run(["--version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^iroh-relay-deno \d+\.\d+\.\d+ \(git \S+, deno \d/);
});

Deno.test("main.ts refuses bad flags with one line and exit code 2", async () => {
  for (
    const [args, expected] of [
      [["--frobnicate"], "error: unknown flag --frobnicate (see --help)"],
      [[], "error: no configuration: pass --config FILE, or --dev for built-in defaults (see --help)"],
      [["--config"], "error: --config needs a value"],
      [["--dev", "--log-level", "loud"], 'error: --log-level: expected debug, info, warn or error, got "loud"'],
    ] as const
  ) {
    const r = await run([...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trim(), expected);
  }
});

Deno.test("main.ts names the bad config key in one line and exits 2", async () => {
  const cases: [string, RegExp][] = [
    ['http_bind_addr = "nonsense"', /^error: config .*: http_bind_addr: expected "host:port"/],
    ["[limits.client.rx]\nmax_burst_bytes = 10", /^error: config .*: limits\.client\.rx\.max_burst_bytes: needs /],
    [
      '[tls]\ncert_mode = "LetsEncrypt"',
      /^error: config .*: tls\.hostname: is required with cert_mode = "LetsEncrypt"/,
    ],
    ["enable_relay = false", /^error: config enable_relay: nothing to run/],
  ];
  for (const [toml, expected] of cases) {
    const path = await tempToml(toml);
    try {
      const r = await run(["--config", path]);
      assert.equal(r.code, 2, `${toml}: ${r.stderr}`);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, expected);
    } finally {
      await Deno.remove(path);
    }
  }
  const missing = await run(["--config", "/nonexistent/relay.toml"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^error: config \/nonexistent\/relay\.toml: cannot read config file/);
});

Deno.test("main.ts check-config refuses unknown keys, or reports them as warnings with --no-strict", async () => {
  const path = await tempToml('http_bind_addr = "127.0.0.1:0"\nfrobnicate = 1');
  try {
    const strict = await run(["check-config", "--config", path]);
    assert.equal(strict.code, 2, strict.stderr);
    assert.match(strict.stderr, /^error: config .*: frobnicate: unknown key; /);
    const r = await run(["check-config", "--no-strict", "--config", path]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: ok \(1 warning\(s\)\)/);
    assert.match(r.stderr, /config frobnicate: unknown key, ignored/);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("main.ts takes iroh-relay's own --config-path flag and an iroh-relay.toml as chatmail ships it", async () => {
  // chatmail's /etc/iroh-relay.toml (spec imap-metadata-discovery §5.1), so the drop-in replacement needs no edit.
  const path = await tempToml('enable_relay = true\nhttp_bind_addr = "[::]:3340"\nenable_stun = false\n');
  try {
    const r = await run(["check-config", "--config-path", path]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: ok$/m);
    assert.equal(r.stderr.trim(), "", "no warnings for a stock iroh-relay.toml");
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("main.ts check-config accepts every shipped example config", async () => {
  const dir = new URL("../deploy/examples/", import.meta.url).pathname;
  const fixtures = new URL("./fixtures/", import.meta.url).pathname;
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".toml")) continue;
    // check-config reads the certificates the examples name: point them at the test ones.
    const text = (await Deno.readTextFile(dir + e.name))
      .replace(/^((?:manual_)?cert_path = )"[^"]*"/gm, `$1"${fixtures}localhost.crt"`)
      .replace(/^((?:manual_)?key_path = )"[^"]*"/gm, `$1"${fixtures}localhost.key"`);
    const path = await tempToml(text);
    try {
      const r = await run(["check-config", "--config", path]);
      assert.equal(r.code, 0, `${e.name}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /unknown key/, e.name);
    } finally {
      await Deno.remove(path);
    }
  }
});

Deno.test("main.ts hash-password prints a hash that [imap.users] accepts", async () => {
  const r = await run(["hash-password"], "correct horse\n");
  assert.equal(r.code, 0, r.stderr);
  const hash = r.stdout.trim();
  assert.match(hash, /^pbkdf2-sha256\$\d+\$/);
  const path = await tempToml(
    `http_bind_addr = "127.0.0.1:0"\n[imap]\nbind_addr = "127.0.0.1:0"\n[imap.users]\nalice = "${hash}"`,
  );
  try {
    const check = await run(["check-config", "--config", path]);
    assert.equal(check.code, 0, check.stderr);
  } finally {
    await Deno.remove(path);
  }
});

/** Starts main.ts, waits for the relay's listen line, returns the port. */
async function startMain(args: string[]): Promise<{ child: Deno.ChildProcess; port: number; stderr: () => string }> {
  const child = new Deno.Command(DENO, {
    args: ["run", "-A", MAIN, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let text = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const port = await withTimeout(
    (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`main.ts exited early: ${text}`);
        text += value;
        const m = /relay listening on http:\/\/\S+:(\d+)/.exec(text);
        if (m) return Number(m[1]);
      }
    })(),
    20_000,
    "main.ts to start listening",
  );
  // Keep draining stderr so the child never blocks on a full pipe.
  (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      text += value;
    }
  })();
  return { child, port, stderr: () => text };
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`main.ts stops on ${signal}: clients are closed, exit code 0`, async () => {
    const path = await tempToml(
      'http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\nstun_bind_addr = "127.0.0.1:0"',
    );
    const { child, port, stderr } = await startMain(["--config", path]);
    try {
      const a = await connectClient(port, "derp");
      const b = await connectClient(port, "v2");
      await a.ping();
      await b.ping();
      child.kill(signal);
      const status = await withTimeout(child.status, 10_000, "main.ts to exit");
      assert.equal(status.code, 0, stderr());
      await withTimeout(Promise.all([a.ended, b.ended]), 5_000, "clients to be disconnected");
      assert.match(stderr(), new RegExp(`${signal}: shutting down`));
      assert.match(stderr(), /stopped/);
      a.close();
      b.close();
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
      await child.status;
      await Deno.remove(path);
    }
  });
}

Deno.test({
  name: "main.ts --dev serves the relay on port 3340 with no config file",
  // A fresh network namespace guarantees port 3340 is free; that needs root and unshare.
  ignore: Deno.uid() !== 0,
  async fn() {
    const script = `ip link set lo up
"${DENO}" run -A "${MAIN}" --dev 2>dev.log &
pid=$!
for i in $(seq 1 100); do
  if curl -fs -o /dev/null http://127.0.0.1:3340/ping 2>/dev/null; then break; fi
  sleep 0.1
done
curl -sS -o /dev/null -w 'ping:%{http_code}\\n' http://127.0.0.1:3340/ping
curl -sS -o /dev/null -w 'metrics:%{http_code}\\n' http://127.0.0.1:9090/ 2>/dev/null || echo metrics:closed
kill -TERM $pid
wait $pid
echo exit=$?`;
    const dir = await Deno.makeTempDir();
    try {
      const out = await new Deno.Command("unshare", {
        args: ["-n", "sh", "-c", script],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      })
        .output();
      const text = new TextDecoder().decode(out.stdout);
      const log = await Deno.readTextFile(`${dir}/dev.log`).catch(() => "");
      assert.match(text, /^ping:200$/m, `${text}\n${log}`);
      assert.match(text, /metrics:(closed|000)/, "metrics are off in --dev");
      assert.match(text, /exit=0/, log);
      assert.match(log, /relay listening on http:\/\/\[::\]:3340/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("main.ts check-config validates a LetsEncrypt table: keys, then the CA file and cert_dir it names", async () => {
  const dir = await Deno.makeTempDir();
  const le = (extra: string) =>
    `http_bind_addr = "127.0.0.1:0"\n[tls]\ncert_mode = "LetsEncrypt"\nhostname = "relay.example.org"\n${extra}`;
  const cases: [string, RegExp][] = [
    [le('cert_dir = "x"'), /^error: config .*: tls\.contact: is required with cert_mode = "LetsEncrypt"/],
    [
      le(`contact = "a@example.org"\ncert_dir = "${dir}/certs"\nacme_ca_file = "${dir}/missing.pem"`),
      /^error: config .*: tls\.acme_ca_file: .*missing\.pem: No such file/,
    ],
    [
      le(`contact = "a@example.org"\ncert_dir = "${dir}/no/such/certs"`),
      /^error: config .*: tls\.cert_dir: .*does not exist/,
    ],
  ];
  try {
    for (const [toml, expected] of cases) {
      const path = await tempToml(toml);
      try {
        const r = await run(["check-config", "--config", path]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr.split("\n").find((l) => l.startsWith("error:")) ?? "", expected);
      } finally {
        await Deno.remove(path);
      }
    }
    const ok = await tempToml(le(`contact = "a@example.org"\ncert_dir = "${dir}/certs"`));
    try {
      const r = await run(["check-config", "--config", ok]);
      assert.equal(r.code, 0, r.stderr);
      await assert.rejects(Deno.stat(`${dir}/certs`), "check-config creates nothing");
    } finally {
      await Deno.remove(ok);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts check-config accepts a Rust relay's LetsEncrypt + STUN config unchanged, warning only about QAD", async () => {
  const dir = await Deno.makeTempDir();
  // The shape iroh's documentation gives for a self-hosted relay.
  const path = await tempToml(`enable_relay = true
http_bind_addr = "[::]:80"
enable_stun = true
enable_quic_addr_discovery = true
enable_metrics = true
metrics_bind_addr = "[::]:9090"

[tls]
hostname = "relay.example.com"
contact = "admin@example.com"
prod_tls = true
cert_mode = "LetsEncrypt"
cert_dir = "${dir}"
`);
  try {
    const r = await run(["check-config", "--config", path]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: ok \(1 warning\(s\)\)/);
    assert.match(r.stderr, /enable_quic_addr_discovery: QUIC address discovery is not served/);
  } finally {
    await Deno.remove(path);
    await Deno.remove(dir, { recursive: true });
  }
});
