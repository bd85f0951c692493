/**
 * @module
 * A throwaway Dovecot for tests: installs Debian's `dovecot-imapd` when it
 * is missing (CI starts from a fresh machine), writes a config into a temp
 * dir, runs `dovecot -F` on loopback ports, and `stop()` kills it and
 * removes everything it created.
 *
 * Options cover what the IMAP proxy tests need (plain and implicit-TLS IMAP,
 * METADATA on or off, COMPRESS via `imap_zlib`) and what a later end-to-end
 * test needs from Dovecot: LMTP on a TCP port for local delivery
 * (`dovecot-lmtpd`), several users, TLS certificate paths, a chosen temp dir.
 * Postfix (SMTP submission) is not started here yet: add it as another
 * option that spawns its own processes and registers them for `stop()`.
 *
 * Mail is stored as Maildir under `<dir>/home/<user>`, owned by `nobody`
 * (Dovecot refuses root for mail processes). Every loop is bounded in tries
 * and time.
 */

/** A mail account. */
export interface MailUser {
  /** Login name, e.g. `alice@example.org`. */
  name: string;
  /** Clear-text password (stored as `{PLAIN}` in the throwaway passwd file). */
  password: string;
}

/** Options of {@link startMailServer}. */
export interface MailServerOptions {
  /** Accounts to create. */
  users: MailUser[];
  /** Working directory (created if missing; removed by `stop()` only if we created it). Default: a new temp dir. */
  dir?: string;
  /** Plain IMAP port on 127.0.0.1 (default: a free port). */
  imapPort?: number;
  /** Implicit-TLS IMAP port: a number, 0 for a free port, or omitted for none. Needs `tls`. */
  imapsPort?: number;
  /** Certificate and key (PEM paths) for IMAPS and STARTTLS. */
  tls?: { certPath: string; keyPath: string };
  /** Enable RFC 5464 METADATA (`imap_metadata = yes` with a file dict). Default false. */
  metadata?: boolean;
  /** Server comment (`mail_server_comment`, shown as `/shared/comment` when METADATA is on). */
  serverComment?: string;
  /** Load `imap_zlib`, so Dovecot advertises `COMPRESS=DEFLATE` after login. Default false. */
  compress?: boolean;
  /** LMTP port for local delivery: a number, 0 for a free port, or omitted for none (installs `dovecot-lmtpd`). */
  lmtpPort?: number;
  /** Install missing Debian packages with apt-get. Default true. */
  install?: boolean;
}

/** A running Dovecot. */
export interface MailServer {
  /** Working directory. */
  dir: string;
  /** Plain IMAP port. */
  imapPort: number;
  /** Implicit-TLS IMAP port, if enabled. */
  imapsPort?: number;
  /** LMTP port, if enabled. */
  lmtpPort?: number;
  /** The accounts. */
  users: MailUser[];
  /** Dovecot's log so far (for failure messages). */
  log(): Promise<string>;
  /** Stops Dovecot (and anything else started) and removes what we created. */
  stop(): Promise<void>;
}

const dec = new TextDecoder();

async function sh(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped", stdin: "null" }).output();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

async function installed(pkg: string): Promise<boolean> {
  const r = await sh("dpkg-query", ["-W", "-f=${Status}", pkg]).catch(() => ({ code: 1, out: "" }));
  return r.code === 0 && r.out.includes("install ok installed");
}

/**
 * Installs Debian packages that are missing (apt-get, as root). Waits for
 * the dpkg lock rather than failing when another process holds it.
 * @throws {Error} the install failed
 */
export async function ensureDebPackages(pkgs: string[]): Promise<void> {
  const missing: string[] = [];
  for (const p of pkgs) if (!(await installed(p))) missing.push(p);
  if (missing.length === 0) return;
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    sh("apt-get", ["-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "--no-install-recommends", ...missing], env);
  let r = await install();
  if (r.code !== 0) {
    // A fresh machine may have no package lists yet.
    await sh("apt-get", ["-o", "DPkg::Lock::Timeout=300", "update", "-q"], env);
    r = await install();
  }
  if (r.code !== 0) throw new Error(`apt-get install ${missing.join(" ")} failed:\n${r.out.slice(-2000)}`);
}

/** A free TCP port on 127.0.0.1 (bind, read, release: a small race we accept in tests). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function canConnect(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts Dovecot with a throwaway config.
 *
 * @throws {Error} install failed, or Dovecot did not come up within 10 s (its log is in the message)
 */
export async function startMailServer(opts: MailServerOptions): Promise<MailServer> {
  if (opts.install !== false) {
    await ensureDebPackages(["dovecot-imapd", ...(opts.lmtpPort !== undefined ? ["dovecot-lmtpd"] : [])]);
  }
  if (opts.imapsPort !== undefined && !opts.tls) throw new Error("imapsPort needs tls");
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "mailsrv-" });
  await Deno.mkdir(dir, { recursive: true });
  // Dovecot's unprivileged processes must traverse the directory.
  await Deno.chmod(dir, 0o755);
  const imapPort = opts.imapPort || freePort();
  const imapsPort = opts.imapsPort === undefined ? undefined : opts.imapsPort || freePort();
  const lmtpPort = opts.lmtpPort === undefined ? undefined : opts.lmtpPort || freePort();

  await Deno.mkdir(`${dir}/home`, { recursive: true });
  await Deno.chmod(`${dir}/home`, 0o755);
  let passwd = "";
  for (const u of opts.users) {
    if (/[:\n]/.test(u.name + u.password)) {
      throw new Error(`User ${u.name}: no ':' or newlines in the throwaway passwd file`);
    }
    passwd += `${u.name}:{PLAIN}${u.password}::::::\n`;
    const home = `${dir}/home/${u.name}`;
    await Deno.mkdir(home, { recursive: true });
    await Deno.chown(home, 65534, 65534);
  }
  await Deno.writeTextFile(`${dir}/passwd`, passwd);
  await Deno.chmod(`${dir}/passwd`, 0o644);

  const conf = `# throwaway test config written by tests/support/mail_server.ts
instance_name = test-${imapPort}
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
listen = 127.0.0.1
protocols = imap${lmtpPort !== undefined ? " lmtp" : ""}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
${
    opts.tls
      ? `ssl = yes\nssl_cert = <${opts.tls.certPath}\nssl_key = <${opts.tls.keyPath}\nssl_min_protocol = TLSv1.2`
      : "ssl = no"
  }
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=${dir}/home/%u
}
mail_location = maildir:~/Maildir
${opts.compress ? "mail_plugins = $mail_plugins zlib" : ""}
${opts.serverComment !== undefined ? `mail_server_comment = "${opts.serverComment}"` : ""}
${opts.metadata ? "mail_attribute_dict = file:%h/dovecot-attributes" : ""}
protocol imap {
  imap_metadata = ${opts.metadata ? "yes" : "no"}
  ${opts.compress ? "mail_plugins = $mail_plugins imap_zlib" : ""}
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${imapPort}
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = ${imapsPort ?? 0}
    ssl = yes
  }
}
${
    lmtpPort !== undefined
      ? `service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${lmtpPort}
  }
}
protocol lmtp {
  auth_username_format = %u
}`
      : ""
  }
`;
  await Deno.writeTextFile(`${dir}/dovecot.conf`, conf);
  const child = new Deno.Command("dovecot", {
    args: ["-F", "-c", `${dir}/dovecot.conf`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let errText = "";
  const drain = (async () => {
    for (;;) {
      const { value, done } = await stderr.read();
      if (done) return;
      errText += value;
    }
  })();

  const log = async () => {
    const file = await Deno.readTextFile(`${dir}/dovecot.log`).catch(() => "");
    return errText + file;
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      let id: ReturnType<typeof setTimeout> | undefined;
      const killLater = new Promise<void>((r) =>
        id = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch {
            // already gone
          }
          r();
        }, 5000)
      );
      await Promise.race([status, killLater]);
      clearTimeout(id);
      await status;
    }
    await drain;
    if (ownDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  // Dovecot gives no readiness signal we can await: poll the port, bounded (10 s), and stop early if it died.
  const ports = [
    imapPort,
    ...(imapsPort !== undefined ? [imapsPort] : []),
    ...(lmtpPort !== undefined ? [lmtpPort] : []),
  ];
  const deadline = performance.now() + 10_000;
  for (const port of ports) {
    for (let i = 0; i < 500; i++) {
      if (exited || performance.now() > deadline) {
        const text = await log();
        await stop();
        throw new Error(`Dovecot did not start (port ${port}):\n${text.slice(-3000)}`);
      }
      if (await canConnect(port)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return {
    dir,
    imapPort,
    ...(imapsPort !== undefined ? { imapsPort } : {}),
    ...(lmtpPort !== undefined ? { lmtpPort } : {}),
    users: opts.users,
    log,
    stop,
  };
}
