/**
 * What a new operator trips over on the command line (issue 13), each as
 * they would meet it: a TOML syntax error with its line, a misspelled key
 * refused with the right name suggested, the warning that explains an
 * error printed before it, `check-config` reading every file the config
 * names and printing the listeners and the URL clients are told, starting
 * with a missing certificate, a port already taken, `hash-password` on a
 * real terminal (a pty), and `--version` from source next to a stale build.
 */

import assert from "node:assert/strict";
import { verifyPassword } from "../imap_metadata/mod.ts";
import { MainProcess } from "./support/main_process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MAIN = `${ROOT}main.ts`;
const DENO = Deno.execPath();
const FIXTURES = `${ROOT}tests/fixtures/`;

async function run(args: string[], opts: { stdin?: string; cwd?: string } = {}) {
  const child = new Deno.Command(DENO, {
    args: ["run", "-A", MAIN, ...args],
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout), stderr: new TextDecoder().decode(out.stderr) };
}

/** Runs `fn` with a temporary directory holding `files`. */
async function withFiles(files: Record<string, string>, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "operator-test-" });
  try {
    for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(`${dir}/${name}`, text);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a TOML syntax error names file, line and column and shows the line", async () => {
  await withFiles({ "r.toml": 'enable_relay = true\nhttp bind_addr = "[::]:80"\n' }, async (dir) => {
    const r = await run(["check-config", "--config", `${dir}/r.toml`]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      `error: config ${dir}/r.toml:2:6: invalid TOML: illegal character in key\n` +
        '  2 | http bind_addr = "[::]:80"\n' +
        "    |      ^\n",
    );
  });
});

Deno.test("a misspelled key is refused with the known key suggested; --no-strict and strict = false only warn", async () => {
  await withFiles({
    "typo.toml": 'http_bind_adr = "127.0.0.1:0"\n[imap]\nbind_adr = "127.0.0.1:0"\n',
    "lenient.toml": 'strict = false\nhttp_bind_addr = "127.0.0.1:0"\nhttp_bind_adr = "x"\n',
  }, async (dir) => {
    const r = await run(["check-config", "--config", `${dir}/typo.toml`]);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 2, r.stderr);
    assert.match(lines[0]!, /WARN .*config imap\.bind_adr: unknown key \(did you mean `imap\.bind_addr`\?\)/);
    assert.match(
      lines[1]!,
      /^error: config .*typo\.toml: http_bind_adr: unknown key \(did you mean `http_bind_addr`\?\) \(and 1 more above\); .*strict = false.*--no-strict/,
    );

    const flag = await run(["check-config", "--no-strict", "--config", `${dir}/typo.toml`]);
    assert.equal(flag.code, 0, flag.stderr);
    assert.match(flag.stderr, /config http_bind_adr: unknown key, ignored \(did you mean `http_bind_addr`\?\)/);
    // What strictness prevents: the typo falls back to the public defaults, which check-config shows.
    assert.match(flag.stdout, /^ {2}relay \(HTTP\) +http:\/\/\[::\]:80 /m);
    assert.match(flag.stdout, /^ {2}IMAP +imap:\/\/\[::\]:143 /m);

    const file = await run(["check-config", "--config", `${dir}/lenient.toml`]);
    assert.equal(file.code, 0, file.stderr);
    assert.match(file.stderr, /http_bind_adr: unknown key, ignored/);
  });
});

Deno.test("the warning that explains an error is printed before it", async () => {
  await withFiles(
    { "r.toml": '[imap]\nbind_addr = "127.0.0.1:0"\nlogin = "users"\n[imap.user]\nbob = "x"\n' },
    async (dir) => {
      const r = await run(["--config", `${dir}/r.toml`]);
      assert.equal(r.code, 2);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 2, r.stderr);
      assert.match(lines[0]!, /WARN .*config imap\.user: unknown key \(did you mean `imap\.users`\?\)/);
      assert.match(lines[1]!, /^error: config .*: imap\.login: "users" needs at least one entry in \[imap\.users\]/);
    },
  );
});

Deno.test("check-config reads every file the config names and names the key of each bad one", async () => {
  const cert = await Deno.readTextFile(`${FIXTURES}localhost.crt`);
  const key = await Deno.readTextFile(`${FIXTURES}localhost.key`);
  const otherKey = await Deno.readTextFile(`${FIXTURES}imap_tls/key.pem`);
  await withFiles(
    { "cert.pem": cert, "key.pem": key, "other.key": otherKey, "junk.pem": "not a certificate\n" },
    async (dir) => {
      const cases: [string, RegExp][] = [
        [
          `[tls]\ncert_mode = "Manual"\nmanual_cert_path = "${dir}/missing.crt"\nmanual_key_path = "${dir}/key.pem"`,
          /^error: config .*: tls\.manual_cert_path: cannot read ".*missing\.crt": No such file/m,
        ],
        [
          `[tls]\ncert_mode = "Manual"\nmanual_cert_path = "${dir}/junk.pem"\nmanual_key_path = "${dir}/key.pem"`,
          /^error: config .*: tls\.manual_cert_path: ".*junk\.pem" holds no PEM certificate/m,
        ],
        [
          `[tls]\ncert_mode = "Manual"\nmanual_cert_path = "${dir}/cert.pem"\nmanual_key_path = "${dir}/cert.pem"`,
          /^error: config .*: tls\.manual_key_path: ".*cert\.pem" is not a PEM private key/m,
        ],
        [
          `[tls]\ncert_mode = "Manual"\nmanual_cert_path = "${dir}/cert.pem"\nmanual_key_path = "${dir}/other.key"`,
          /^error: config .*: tls\.manual_key_path: ".*other\.key" is not the key of the certificate/m,
        ],
        [
          `[imap]\ntls_bind_addr = "127.0.0.1:0"\ncert_path = "${dir}/cert.pem"\nkey_path = "${dir}/nokey.pem"`,
          /^error: config .*: imap\.key_path: cannot read/m,
        ],
        [
          `[imap]\nmode = "proxy"\n[imap.upstream]\nhost = "127.0.0.1"\nca_file = "${dir}/junk.pem"`,
          /^error: config .*: imap\.upstream\.ca_file: ".*junk\.pem" holds no PEM certificate/m,
        ],
        [
          `[mailbox]\nserver_names = ["relay.example"]\ndata_dir = "${dir}/junk.pem/mailbox"`,
          /^error: config .*: mailbox\.data_dir: ".*junk\.pem\/mailbox" cannot be created \(checked ".*junk\.pem"\): not a directory/m,
        ],
        [
          `[mesh]\nbackend = "kv"\nkv_path = "${dir}/no/such/dir/mesh.sqlite"`,
          /^error: config .*: mesh\.kv_path: the directory of ".*mesh\.sqlite" is not usable: No such file/m,
        ],
      ];
      for (const [toml, expected] of cases) {
        await Deno.writeTextFile(`${dir}/r.toml`, `http_bind_addr = "127.0.0.1:0"\n${toml}\n`);
        const r = await run(["check-config", "--config", `${dir}/r.toml`]);
        assert.equal(r.code, 2, `${toml}\n${r.stdout}${r.stderr}`);
        assert.match(r.stderr, expected, toml);
        assert.doesNotMatch(r.stdout, /: ok/);
      }
    },
  );
});

Deno.test("check-config prints the listeners and the URL clients are told, and warns about a short host name", async () => {
  await withFiles({
    "good.toml": `http_bind_addr = "127.0.0.1:8080"
metrics_bind_addr = "127.0.0.1:9091"
[tls]
cert_mode = "Manual"
hostname = "relay.example.org"
https_bind_addr = "127.0.0.1:8443"
manual_cert_path = "${FIXTURES}localhost.crt"
manual_key_path = "${FIXTURES}localhost.key"
[imap]
bind_addr = "127.0.0.1:1143"
tls_bind_addr = "127.0.0.1:1993"
`,
    "short.toml":
      `http_bind_addr = "127.0.0.1:0"\n[imap]\nbind_addr = "127.0.0.1:0"\niroh_relay_url = "http://relayhost:3340/"\n`,
  }, async (dir) => {
    const r = await run(["check-config", "--config", `${dir}/good.toml`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.equal(
      r.stdout,
      `${dir}/good.toml: ok
listeners:
  captive portal (HTTP)  http://127.0.0.1:8080  (http_bind_addr)
  relay (HTTPS)          https://127.0.0.1:8443  (tls.https_bind_addr)
  STUN                   udp://127.0.0.1:3478  (stun_bind_addr)
  metrics                http://127.0.0.1:9091  (metrics_bind_addr)
  IMAP                   imap://127.0.0.1:1143  (imap.bind_addr)
  IMAPS                  imaps://127.0.0.1:1993  (imap.tls_bind_addr)
clients are told: https://relay.example.org:8443/  (advertised over IMAP METADATA; derived from the relay listener, imap.iroh_relay_url overrides it)
`,
    );
    const short = await run(["check-config", "--config", `${dir}/short.toml`]);
    assert.equal(short.code, 0, short.stderr);
    assert.match(
      short.stdout,
      /^clients are told: http:\/\/relayhost:3340\/ {2}\(advertised over IMAP METADATA \(imap\.iroh_relay_url\)\)$/m,
    );
    assert.match(
      short.stderr,
      /WARN .*the relay URL http:\/\/relayhost:3340\/ uses the host name "relayhost" without a domain/,
    );
    assert.match(short.stdout, /: ok \(1 warning\(s\)\)/);
  });
});

Deno.test("starting with a missing certificate names the config key, not only the OS error", async () => {
  await withFiles({}, async (dir) => {
    await Deno.writeTextFile(
      `${dir}/r.toml`,
      `http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\nenable_stun = false\n[tls]\ncert_mode = "Manual"\n` +
        `https_bind_addr = "127.0.0.1:0"\nmanual_cert_path = "${dir}/gone.crt"\nmanual_key_path = "${dir}/gone.key"\n`,
    );
    const r = await run(["--config", `${dir}/r.toml`]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^error: config .*r\.toml: tls\.manual_cert_path: cannot read ".*gone\.crt"/m);
  });
});

Deno.test("an address already in use is named with its listener and key; --dev says how to pick another port", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    await withFiles({
      "relay.toml": `http_bind_addr = "127.0.0.1:${port}"\nenable_metrics = false\nenable_stun = false\n`,
      "imap.toml":
        `http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\nenable_stun = false\n[imap]\nbind_addr = "127.0.0.1:${port}"\n`,
    }, async (dir) => {
      const relay = await run(["--config", `${dir}/relay.toml`]);
      assert.equal(relay.code, 2);
      assert.equal(
        relay.stderr.trim().split("\n").at(-1),
        `error: cannot start: relay (HTTP) listener 127.0.0.1:${port} (http_bind_addr): address already in use; ` +
          "stop the other program or change http_bind_addr",
      );
      const imap = await run(["--config", `${dir}/imap.toml`]);
      assert.match(
        imap.stderr,
        new RegExp(`error: cannot start: IMAP listener 127\\.0\\.0\\.1:${port} \\(imap\\.bind_addr\\)`),
      );
      const dev = await run(["--dev", "--config", `${dir}/relay.toml`]);
      assert.match(
        dev.stderr,
        new RegExp(
          `address already in use; another relay or \`npm run dev\` may be running\\. For another port: ` +
            `printf 'http_bind_addr = "127\\.0\\.0\\.1:${
              port + 1
            }"\\\\n' > dev\\.toml && npm run dev -- --config dev\\.toml`,
        ),
      );
    });
  } finally {
    taken.close();
  }
});

Deno.test("the start line says which relay URL to give clients", async () => {
  await withFiles(
    { "r.toml": 'http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\nenable_stun = false\n' },
    async (dir) => {
      const main = new MainProcess(["--dev", "--config", `${dir}/r.toml`]);
      try {
        const line = (await main.waitFor(/running \(dev mode\); relay URL for clients: (\S+)/))[1]!;
        const port = /relay listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(main.log)![1];
        assert.equal(line, `http://127.0.0.1:${port}/`);
      } finally {
        await main.stop();
      }
    },
  );
});

/** Runs `main.ts hash-password` on a pseudo-terminal, typing `typed` after each prompt. */
async function hashOnTerminal(typed: string[]): Promise<{ code: number; screen: string }> {
  const script = `
import json, os, pty, select, sys, time
deno, main, typed = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
pid, fd = pty.fork()
if pid == 0:
    os.environ["NO_COLOR"] = "1"
    os.execv(deno, [deno, "run", "-A", main, "hash-password"])
out = b""
def read(until, timeout=30):
    global out
    end = time.time() + timeout
    while until is None or until not in out:
        left = end - time.time()
        if left <= 0:
            raise SystemExit("timeout waiting for %r; screen so far: %r" % (until, out))
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        out += chunk
prompts = [b"(not shown): ", b"again: "]
for i, text in enumerate(typed):
    read(prompts[min(i, 1)])
    for ch in text:
        os.write(fd, ch.encode())
read(None)
_, status = os.waitpid(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "screen": out.decode("utf-8", "replace")}))
`;
  const out = await new Deno.Command("python3", {
    args: ["-c", script, DENO, MAIN, JSON.stringify(typed)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `pty driver failed: ${stderr}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("hash-password on a terminal prompts, does not echo, and Enter finishes", async () => {
  const { code, screen } = await hashOnTerminal(["correct horse\r", "correct horse\r"]);
  assert.equal(code, 0, screen);
  assert.match(screen, /Password for \[imap\.users\] \(not shown\): /);
  assert.doesNotMatch(screen, /correct|horse/, "the password was echoed");
  const hash = /pbkdf2-sha256\$\S+/.exec(screen)?.[0];
  assert.ok(hash, screen);
  assert.ok(await verifyPassword("correct horse", hash));
  assert.ok(!(await verifyPassword("correct hors", hash)));

  const typo = await hashOnTerminal(["correct horse\r", "correct h0rse\r"]);
  assert.equal(typo.code, 2);
  assert.match(typo.screen, /error: hash-password: the two passwords differ/);
  assert.doesNotMatch(typo.screen, /pbkdf2/);
  // Backspace edits, as on any password prompt.
  const edited = await hashOnTerminal(["pw1x\x7f\r", "pw1\r"]);
  assert.equal(edited.code, 0, edited.screen);
  assert.ok(await verifyPassword("pw1", /pbkdf2-sha256\$\S+/.exec(edited.screen)![0]));
});

Deno.test("hash-password still reads a piped password for scripts", async () => {
  const r = await run(["hash-password"], { stdin: "s3cret\n" });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "", "no prompt when stdin is not a terminal");
  assert.ok(await verifyPassword("s3cret", r.stdout.trim()));
});

Deno.test("--version from source ignores a build left in dist/", async () => {
  const dist = `${ROOT}dist`;
  const file = `${dist}/build-info.json`;
  const existed = await Deno.stat(file).then(() => true, () => false);
  const distExisted = await Deno.stat(dist).then(() => true, () => false);
  const saved = existed ? await Deno.readTextFile(file) : undefined;
  try {
    await Deno.mkdir(dist, { recursive: true });
    await Deno.writeTextFile(file, JSON.stringify({ git: "0123456789ab-dirty", built: "2000-01-01T00:00:00Z" }));
    const r = await run(["--version"]);
    assert.equal(r.code, 0);
    assert.doesNotMatch(r.stdout, /0123456789ab-dirty/);
    assert.match(r.stdout, /\(git unknown,/);
  } finally {
    if (saved !== undefined) await Deno.writeTextFile(file, saved);
    else await Deno.remove(file).catch(() => {});
    if (!distExisted) await Deno.remove(dist).catch(() => {});
  }
});

Deno.test("check-config with the start task's permissions (no --allow-write) accepts an existing data directory", async () => {
  await withFiles({}, async (dir) => {
    await Deno.writeTextFile(
      `${dir}/r.toml`,
      `http_bind_addr = "127.0.0.1:0"\n[mesh]\nbackend = "kv"\nkv_path = "${dir}/mesh.sqlite"\n`,
    );
    const out = await new Deno.Command(DENO, {
      // The permissions of `deno task start` and of the compiled binary.
      args: [
        "run",
        "--allow-net",
        "--allow-read",
        "--allow-env",
        "--allow-sys=hostname",
        MAIN,
        "check-config",
        "--config",
        `${dir}/r.toml`,
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /: ok/);
  });
});
