/**
 * @module
 * A throwaway Dovecot for tests: installs Debian's `dovecot-imapd` when it
 * is missing (CI starts from a fresh machine), writes a config into a temp
 * dir, runs `dovecot -F` on loopback ports, and `stop()` kills it and
 * removes everything it created.
 *
 * Options cover what the IMAP proxy tests need (plain and implicit-TLS IMAP,
 * METADATA on or off, COMPRESS via `imap_zlib`) and what the Delta Chat
 * end-to-end test needs: LMTP on a TCP port for local delivery
 * (`dovecot-lmtpd`), several users, TLS certificate paths, a chosen temp dir,
 * and SMTP (option `smtp`).
 *
 * SMTP is Debian's Postfix with its own `main.cf`/`master.cf` in
 * `<dir>/postfix` (queue in `<dir>/postfix-queue`), never the machine's
 * `/etc/postfix`:
 * - one implicit-TLS submission listener on the address and port asked for;
 * - SASL (PLAIN, LOGIN) checked by this Dovecot over a loopback TCP auth
 *   listener, so the same passwd file serves IMAP and SMTP;
 * - every recipient domain is delivered to Dovecot over LMTP on loopback
 *   (no DNS, no outbound SMTP, no local delivery agent);
 * - `postfix start-fg` runs as our child; `stop()` runs `postfix stop`, which
 *   ends the master daemon (its own process group) and its children.
 * The package is installed with debconf preseeded to "No configuration", so
 * the install itself configures and starts nothing.
 *
 * Mail is stored as Maildir under `<dir>/home/<user>`, owned by `nobody`
 * (Dovecot refuses root for mail processes). Every loop is bounded in tries
 * and time. The Postfix config text is `postfix_conf.ts`.
 */

import { postfixMainCf, postfixMasterCf } from "./postfix_conf.ts";

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
  /**
   * Start Postfix for SMTP submission with implicit TLS (needs `tls`), SASL
   * via this Dovecot, delivery via LMTP (enabled automatically).
   */
  smtp?: SmtpOptions;
  /** Called with the pid of each long-lived process started (Dovecot, the Postfix master), e.g. to clean up after a crash. */
  onSpawn?: (pid: number, what: string) => void;
}

/** Options of the Postfix submission listener. */
export interface SmtpOptions {
  /** IP address to listen on (default `127.0.0.1`). */
  hostname?: string;
  /** Port: a number, or 0/omitted for a free one. */
  port?: number;
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
  /** Postfix's implicit-TLS submission listener, if `smtp` was given. */
  smtp?: { hostname: string; port: number };
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
 * Debconf answers given before installing a package. Postfix's default
 * ("Internet Site") would write /etc/postfix/main.cf and start a system
 * Postfix on port 25; the tests run their own instance instead.
 */
const DEBCONF_PRESEED: Record<string, string[]> = {
  postfix: ["postfix postfix/main_mailer_type select No configuration"],
};

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
  const preseed = missing.flatMap((p) => DEBCONF_PRESEED[p] ?? []);
  if (preseed.length > 0) {
    const child = new Deno.Command("debconf-set-selections", { stdin: "piped", stdout: "null", stderr: "piped" })
      .spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(preseed.join("\n") + "\n"));
    await w.close();
    const r = await child.output();
    if (r.code !== 0) throw new Error(`debconf-set-selections failed: ${dec.decode(r.stderr)}`);
  }
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

/** A free TCP port on `hostname`, default 127.0.0.1 (bind, read, release: a small race we accept in tests). */
export function freePort(hostname = "127.0.0.1"): number {
  const l = Deno.listen({ hostname, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function canConnect(port: number, hostname = "127.0.0.1"): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname, port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

/** A long-lived child process whose stderr is kept for error messages. */
interface Daemon {
  child: Deno.ChildProcess;
  status: Promise<Deno.CommandStatus>;
  exited(): boolean;
  stderr(): string;
  /** Waits for the exit, at most `ms`; true if it exited. */
  waitExit(ms: number): Promise<boolean>;
  /** Kills (if still running) and waits for the exit and the stderr pump. */
  kill(signal: Deno.Signal): Promise<void>;
}

function spawnDaemon(cmd: string, args: string[]): Daemon {
  const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let errText = "";
  // stdout and stderr both go to the log text: Postfix's start-fg prints its checks on stdout.
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) errText = (errText + chunk).slice(-20_000);
  };
  const drain = Promise.all([pump(child.stdout), pump(child.stderr)]).catch(() => {});
  const waitExit = async (ms: number) => {
    let id: ReturnType<typeof setTimeout> | undefined;
    const done = await Promise.race([
      status.then(() => true),
      new Promise<boolean>((r) => id = setTimeout(() => r(false), ms)),
    ]);
    clearTimeout(id);
    return done;
  };
  return {
    child,
    status,
    exited: () => exited,
    stderr: () => errText,
    waitExit,
    async kill(signal) {
      if (!exited) {
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
      }
      if (!(await waitExit(5000)) && !exited) {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
      await status;
      await drain;
    },
  };
}

/** True if a process with this pid exists. */
function alive(pid: number): boolean {
  try {
    // Deno.kill has no signal 0; SIGCONT is a no-op for a running process and fails the same way for a missing one.
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/**
 * Polls `host:port` until it accepts connections, bounded by `deadline`
 * (performance.now() ms); false if `dead()` turns true or time runs out.
 */
async function waitPort(hostname: string, port: number, deadline: number, dead: () => boolean): Promise<boolean> {
  for (let i = 0; i < 2000; i++) {
    if (dead() || performance.now() > deadline) return false;
    if (await canConnect(port, hostname)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/**
 * Starts Dovecot (and Postfix when `smtp` is given) with a throwaway config.
 *
 * @throws {Error} install failed, or a server did not come up within 10 s (its log is in the message)
 */
export async function startMailServer(opts: MailServerOptions): Promise<MailServer> {
  const smtp = opts.smtp;
  if (smtp && !opts.tls) throw new Error("smtp needs tls");
  const wantLmtp = opts.lmtpPort !== undefined || smtp !== undefined;
  if (opts.install !== false) {
    await ensureDebPackages([
      "dovecot-imapd",
      ...(wantLmtp ? ["dovecot-lmtpd"] : []),
      ...(smtp ? ["postfix"] : []),
    ]);
  }
  if (opts.imapsPort !== undefined && !opts.tls) throw new Error("imapsPort needs tls");
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "mailsrv-" });
  await Deno.mkdir(dir, { recursive: true });
  // Dovecot's unprivileged processes must traverse the directory.
  await Deno.chmod(dir, 0o755);
  const imapPort = opts.imapPort || freePort();
  const imapsPort = opts.imapsPort === undefined ? undefined : opts.imapsPort || freePort();
  const lmtpPort = wantLmtp ? opts.lmtpPort || freePort() : undefined;
  const authPort = smtp ? freePort() : undefined;
  const smtpAddr = smtp ? { hostname: smtp.hostname ?? "127.0.0.1", port: 0 } : undefined;
  if (smtpAddr) smtpAddr.port = smtp!.port || freePort(smtpAddr.hostname);

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
${
    authPort !== undefined
      ? `# SASL for Postfix (Dovecot's client protocol over TCP; Postfix SASL_README)
service auth {
  inet_listener auth-postfix {
    address = 127.0.0.1
    port = ${authPort}
  }
}`
      : ""
  }
`;
  await Deno.writeTextFile(`${dir}/dovecot.conf`, conf);
  const dovecot = spawnDaemon("dovecot", ["-F", "-c", `${dir}/dovecot.conf`]);
  opts.onSpawn?.(dovecot.child.pid, "dovecot");
  let postfix: Daemon | undefined;

  const log = async () => {
    const file = await Deno.readTextFile(`${dir}/dovecot.log`).catch(() => "");
    const pf = postfix
      ? `\n--- postfix\n${postfix.stderr()}${await Deno.readTextFile(`${dir}/postfix.log`).catch(() => "")}`
      : "";
    return dovecot.stderr() + file + pf;
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (postfix) {
      // "postfix stop" signals the master (pid file), waits up to 5 s, then kills its process group.
      if (!postfix.exited()) {
        await sh("postfix", ["-c", `${dir}/postfix`, "stop"]).catch(() => {});
      }
      if (!(await postfix.waitExit(8000))) await postfix.kill("SIGTERM");
      await postfix.status;
    }
    await dovecot.kill("SIGTERM");
    if (ownDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  // Neither server gives a readiness signal we can await: poll the ports, bounded (10 s each), stop early if it died.
  const ports = [
    imapPort,
    ...(imapsPort !== undefined ? [imapsPort] : []),
    ...(lmtpPort !== undefined ? [lmtpPort] : []),
    ...(authPort !== undefined ? [authPort] : []),
  ];
  let deadline = performance.now() + 10_000;
  for (const port of ports) {
    if (!(await waitPort("127.0.0.1", port, deadline, dovecot.exited))) {
      const text = await log();
      await stop();
      throw new Error(`Dovecot did not start (port ${port}):\n${text.slice(-3000)}`);
    }
  }

  if (smtpAddr) {
    const pdir = `${dir}/postfix`;
    // Postfix wants its config tree owned by root and its queue and data dirs elsewhere, owned as it sets them.
    await Deno.mkdir(pdir, { recursive: true });
    await Deno.mkdir(`${dir}/postfix-queue`, { recursive: true });
    await Deno.mkdir(`${dir}/postfix-data`, { recursive: true });
    await Deno.chown(`${dir}/postfix-data`, postfixUid(), null);
    await Deno.writeTextFile(`${pdir}/main.cf`, postfixMainCf(dir, lmtpPort!, authPort!, opts.tls!));
    await Deno.writeTextFile(`${pdir}/master.cf`, postfixMasterCf(smtpAddr.hostname, smtpAddr.port));
    postfix = spawnDaemon("postfix", ["-c", pdir, "start-fg"]);
    deadline = performance.now() + 15_000;
    const up = await waitPort(smtpAddr.hostname, smtpAddr.port, deadline, postfix.exited);
    const masterPid = Number((await Deno.readTextFile(`${dir}/postfix-queue/pid/master.pid`).catch(() => "")).trim());
    if (masterPid > 0 && alive(masterPid)) opts.onSpawn?.(masterPid, "postfix master");
    if (!up) {
      const text = await log();
      await stop();
      throw new Error(`Postfix did not start (${smtpAddr.hostname}:${smtpAddr.port}):\n${text.slice(-3000)}`);
    }
  }
  return {
    dir,
    imapPort,
    ...(imapsPort !== undefined ? { imapsPort } : {}),
    ...(lmtpPort !== undefined ? { lmtpPort } : {}),
    ...(smtpAddr ? { smtp: smtpAddr } : {}),
    users: opts.users,
    log,
    stop,
  };
}

/** Uid of the `postfix` system user (created by the package). */
function postfixUid(): number {
  const line = Deno.readTextFileSync("/etc/passwd").split("\n").find((l) => l.startsWith("postfix:"));
  const uid = Number(line?.split(":")[2]);
  if (!Number.isInteger(uid)) throw new Error("No postfix user in /etc/passwd (is the postfix package installed?)");
  return uid;
}
