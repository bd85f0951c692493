/**
 * @module
 * Command line entry: parse flags, load the config, start every service it
 * enables (relay, IMAP METADATA listener, mailbox, discovery: pkarr + DNS),
 * stop cleanly on SIGINT/SIGTERM.
 *
 * - `main.ts --config FILE` (or `--config-path FILE`, iroh-relay's own flag,
 *   so an existing unit file works unchanged)
 * - `main.ts --dev`: built-in defaults, relay on `[::]:3340`, plain HTTP,
 *   metrics off, no file needed
 * - `main.ts check-config --config FILE`: validate the file and every file
 *   it names, print the listeners and the relay URL clients are told
 * - `main.ts hash-password`: prompt for a password (no echo) or read it
 *   from stdin, print an `[imap.users]` hash
 *
 * Bad flags or config end with one `error: …` line and exit code 2.
 */

import {
  checkConfigFiles,
  clientRelayUrl,
  type Config,
  ConfigError,
  configFromText,
  formatBindAddr,
  loadConfig,
  shortHostWarning,
} from "./config/mod.ts";
import { checkConfig, explainListenError, PasswordAborted, readPassword } from "./cli/mod.ts";
import { createLogger, type Logger } from "./log/mod.ts";
import { renderProcessMetrics } from "./metrics/mod.ts";
import { addMeshMetrics, meshFromConfig } from "./mesh/mod.ts";
import { type HttpRoute, type RelayService, requestBytes, startRelay } from "./relay/mod.ts";
import { AdmissionMetrics } from "./admission/mod.ts";
import { type MailboxService, startMailbox } from "./mailbox/mod.ts";
import { type DiscoveryHandle, startDiscovery } from "./discovery/mod.ts";
import { hashPassword, type ImapService, startImap } from "./imap_metadata/mod.ts";
import { AcmeManager, type AcmeOptions, checkAcmeSetup } from "./acme/mod.ts";
import { startStunServer, type StunServer } from "./stun/mod.ts";
import denoJson from "./deno.json" with { type: "json" };

/** Our version, from `deno.json`. */
export const VERSION: string = denoJson.version;

/**
 * Git revision: in a compiled binary, from the `build-info.json` that
 * `deno task compile` embeds; else `RELAY_GIT_HASH`; else "unknown". A
 * source run never reads `dist/`, so a build left there cannot lend it a
 * stale revision.
 */
export const GIT_HASH: string = (() => {
  if (Deno.build.standalone) {
    try {
      const info = JSON.parse(Deno.readTextFileSync(new URL("./dist/build-info.json", import.meta.url)));
      if (typeof info.git === "string") return info.git;
    } catch {
      // built without build info
    }
  }
  try {
    return Deno.env.get("RELAY_GIT_HASH") ?? "unknown";
  } catch {
    return "unknown";
  }
})();

/** How this program is started, for the usage text: the binary, or the task from a clone. */
const PROGRAM = Deno.build.standalone ? "iroh-relay-deno" : "npx deno task start";

const USAGE = `iroh relay + IMAP METADATA discovery, version ${VERSION}

Usage (${Deno.build.standalone ? "this binary" : "from a clone; the compiled binary takes the same arguments"}):
  ${PROGRAM} --config FILE
      run every service FILE enables
  ${PROGRAM} --dev [--config FILE]
      development defaults: relay on [::]:3340, plain HTTP, metrics off
  ${PROGRAM} check-config --config FILE
      validate FILE and every file it names, print the listeners and the relay URL clients are told
  ${PROGRAM} hash-password
      prompt for a password (or read stdin), print a hash for [imap.users]
  ${PROGRAM} --version | --help

Flags:
  --config FILE, --config-path FILE   TOML config (a superset of iroh-relay.toml)
  --dev                               development mode (see above)
  --log-level LEVEL                   debug | info | warn | error (overrides [log] level)
  --log-format FORMAT                 text | json (overrides [log] format)
  --no-strict                         unknown config keys are warnings, not errors (as strict = false)
`;

/** Parsed command line. */
export interface Cli {
  /** `run`, `check-config`, `hash-password`, `help`, `version`. */
  command: "run" | "check-config" | "hash-password" | "help" | "version";
  /** `--config` path. */
  configPath?: string;
  /** `--dev`. */
  dev: boolean;
  /** `--log-level`. */
  logLevel?: "debug" | "info" | "warn" | "error";
  /** `--log-format`. */
  logFormat?: "text" | "json";
  /** `--no-strict`: unknown config keys are only warnings. */
  noStrict?: boolean;
}

/** A command-line mistake: printed as one line, exit 2. */
export class UsageError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Parses the command line.
 * @throws {UsageError}
 */
export function parseArgs(args: string[]): Cli {
  const cli: Cli = { command: "run", dev: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const [flag, inline] = a.startsWith("--") && a.includes("=")
      ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
      : [a, undefined];
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined || v === "") throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--config":
      case "--config-path":
      case "-c":
        cli.configPath = value();
        break;
      case "--dev":
        cli.dev = true;
        break;
      case "--no-strict":
        cli.noStrict = true;
        break;
      case "--log-level": {
        const v = value();
        if (!["debug", "info", "warn", "error"].includes(v)) {
          throw new UsageError(`--log-level: expected debug, info, warn or error, got "${v}"`);
        }
        cli.logLevel = v as Cli["logLevel"] & string;
        break;
      }
      case "--log-format": {
        const v = value();
        if (v !== "text" && v !== "json") throw new UsageError(`--log-format: expected text or json, got "${v}"`);
        cli.logFormat = v;
        break;
      }
      case "--help":
      case "-h":
        cli.command = "help";
        break;
      case "--version":
      case "-V":
        cli.command = "version";
        break;
      case "check-config":
      case "hash-password":
        if (i !== 0) throw new UsageError(`${flag} must come first`);
        cli.command = flag;
        break;
      default:
        throw new UsageError(
          a.startsWith("-") ? `unknown flag ${a} (see --help)` : `unexpected argument "${a}" (see --help)`,
        );
    }
  }
  if (cli.command === "check-config" && cli.configPath === undefined) {
    throw new UsageError("check-config needs --config FILE");
  }
  if (cli.command === "run" && cli.configPath === undefined && !cli.dev) {
    throw new UsageError("no configuration: pass --config FILE, or --dev for built-in defaults (see --help)");
  }
  return cli;
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}

/** Loads the config the command line names (or the `--dev` defaults). */
export async function configFor(cli: Cli): Promise<{ config: Config; warnings: string[] }> {
  const env = {
    env: Deno.env.toObject(),
    dev: cli.dev,
    hostname: hostname(),
    ...(cli.noStrict ? { strict: false } : {}),
  };
  const loaded = cli.configPath !== undefined
    ? await loadConfig(cli.configPath, env)
    : configFromText("", "defaults", env);
  if (cli.logLevel) loaded.config.log.level = cli.logLevel;
  if (cli.logFormat) loaded.config.log.format = cli.logFormat;
  return loaded;
}

/** The running services. */
export interface Services {
  /** The relay, if enabled. */
  relay?: RelayService;
  /** The IMAP listener, if `[imap]` is present. */
  imap?: ImapService;
  /** The STUN server, if `enable_stun`. */
  stun?: StunServer;
  /** Certificate renewal, with `cert_mode = "LetsEncrypt"`. */
  acme?: AcmeManager;
  /**
   * Re-reads the certificate files into every TLS listener (HTTPS relay,
   * IMAPS); new connections get the new certificate, open ones continue.
   * SIGHUP and ACME both call it.
   * @returns the names of the listeners that took a new certificate
   * @throws {Error} naming the listeners whose files were unusable (those keep the old certificate; the others
   *   were still reloaded)
   */
  reloadTls(): Promise<string[]>;
  /** The Matrix relay mailbox, if `[mailbox]` is present (served on the relay listener). */
  mailbox?: MailboxService;
  /** Discovery (pkarr relay + DNS), if `[discovery]` is present. */
  discovery?: DiscoveryHandle;
  /** Stops everything. */
  close(): Promise<void>;
}

/** Knobs of {@link startServices} that are not config keys (tests shorten ACME's waits). */
export interface ServiceTuning {
  /** ACME retry backoff, status polling and clock. */
  acme?: Pick<AcmeOptions, "backoff" | "poll" | "now">;
}

/**
 * Starts every service `config` enables.
 * @throws {Error} nothing is enabled, or a listener cannot start
 */
export async function startServices(config: Config, log: Logger, tuning: ServiceTuning = {}): Promise<Services> {
  if (!config.enableRelay && !config.imap && !config.discovery) {
    throw new ConfigError(
      "enable_relay",
      "nothing to run: the relay is disabled and there is no [imap] or [discovery] section",
    );
  }
  const services: Services = {
    async reloadTls() {
      const done: string[] = [];
      const failed: string[] = [];
      const targets: [string, (() => Promise<boolean>) | undefined][] = [
        ["relay https", services.relay && (() => services.relay!.reloadTls())],
        ["imaps", services.imap && (() => services.imap!.reloadTls())],
      ];
      for (const [name, reload] of targets) {
        if (!reload) continue;
        try {
          if (await reload()) done.push(name);
        } catch (e) {
          failed.push(`${name}: ${(e as Error).message}`);
        }
      }
      if (failed.length) {
        throw new Error(`${failed.join("; ")}${done.length ? ` (reloaded: ${done.join(", ")})` : ""}`);
      }
      return done;
    },
    async close() {
      services.acme?.close();
      await Promise.allSettled([services.imap?.close(), services.relay?.close(), services.stun?.close()]);
      // After the relay: no request can reach the store any more.
      await Promise.allSettled([services.mailbox?.close(), services.discovery?.close()]);
    },
  };
  try {
    // One set of admission counters for every listener, rendered on the metrics port.
    const admissionMetrics = new AdmissionMetrics();
    const health = {
      version: VERSION,
      gitHash: GIT_HASH,
      services: () => ({
        imap: services.imap ? services.imap.status() : "disabled",
        ...(services.acme ? { certificate: services.acme.status().certificate } : {}),
        mailbox: services.mailbox ? services.mailbox.status() : "disabled",
        discovery: services.discovery ? services.discovery.health() : "disabled",
      }),
      // The public /healthz says "unhealthy" (503) when a store the service depends on is failing.
      healthy: () =>
        (services.discovery?.health().healthy ?? true) &&
        (services.mailbox ? services.mailbox.status().state === "ok" : true),
    };
    const routes: HttpRoute[] = [];
    if (config.mailbox) {
      const mailbox = services.mailbox = await startMailbox(config.mailbox, { log: log.child("mailbox") });
      routes.push({
        prefix: mailbox.prefix,
        maxBodyBytes: mailbox.maxBodyBytes,
        // relay_txn is a GET with a JSON body, which the listener hands over aside.
        handle: async (req) => mailbox.handle(req, await requestBytes(req)),
      });
    }
    if (config.discovery) {
      services.discovery = await startDiscovery(config.discovery, { log: log.child("discovery") });
      routes.push(...services.discovery.routes);
    }
    const build = { version: VERSION, git: GIT_HASH, deno: Deno.version.deno };
    const relayLog = log.child("relay");
    const tls = config.tls;
    // Before any listener opens: the cached certificate, or a placeholder the TLS listeners can load.
    if (tls?.acme && !tls.dangerousHttpOnly) {
      services.acme = await AcmeManager.prepare(tls.acme, { ...tuning.acme, log: log.child("acme") });
    }
    // `[mesh]` links this instance to the others behind the same relay URL.
    const mesh = config.mesh ? meshFromConfig(config.mesh, { log: relayLog }) : undefined;
    services.relay = await startRelay(config, {
      log: relayLog,
      health,
      routes: [...routes, ...(services.acme ? [services.acme.route] : [])],
      extraMetrics: () =>
        (services.imap?.metrics() ?? "") + (services.stun?.metrics.render() ?? "") +
        (services.mailbox?.metrics() ?? "") + (services.discovery?.metrics() ?? "") +
        renderProcessMetrics("iroh_relay_deno", build),
      admissionMetrics,
      ...(mesh ? { core: { mesh } } : {}),
    });
    if (mesh) addMeshMetrics(services.relay.core.metrics, mesh);
    if (config.imap) services.imap = await startImap(config, { log: log.child("imap"), admissionMetrics });
    if (config.enableStun) {
      const stunLog = log.child("stun");
      try {
        services.stun = startStunServer(config.stunBindAddr, { log: stunLog });
      } catch (e) {
        throw new Error(`stun_bind_addr ${formatBindAddr(config.stunBindAddr)}: ${(e as Error).message}`);
      }
      stunLog.info(`STUN listening on udp://${formatBindAddr(services.stun.addr)}`);
    }
    services.acme?.start(async () => {
      await services.reloadTls();
    });
  } catch (e) {
    await services.close();
    throw e;
  }
  return services;
}

/**
 * Re-reads the config file and applies its `access` section (allow/deny
 * lists, tokens, the http hook): connected clients that the new policy
 * refuses are disconnected, a few at a time; those it cannot decide about
 * (the http hook is down) are kept. Other keys need a restart.
 */
async function reloadAccess(config: Config, relay: RelayService, log: Logger): Promise<void> {
  const r = await relay.core.setAccess(config.access);
  log.info(
    `access control reloaded (${config.access.mode}); ${r.revoked} connection(s) no longer allowed were closed, ` +
      `${r.kept} kept because the access check could not be made`,
  );
}

/**
 * SIGHUP: validates the config file again, then re-reads its `access`
 * section and the certificate of every TLS listener (HTTPS relay and
 * IMAPS) side by side (re-checking many clients against a slow access hook
 * must not delay the certificate). A file that no longer validates changes
 * nothing, certificates included; "TLS certificate reloaded" is logged only
 * for listeners that really took a new certificate.
 */
export async function reloadOnSighup(cli: Cli, services: Services, log: Logger): Promise<void> {
  let config: Config | undefined;
  if (cli.configPath !== undefined) {
    try {
      ({ config } = await configFor(cli));
    } catch (e) {
      log.error(`config reload failed, keeping the running configuration: ${(e as Error).message}`);
      return;
    }
  }
  const access = config && services.relay
    ? reloadAccess(config, services.relay, log).catch((e) => log.error(`access reload failed: ${(e as Error).message}`))
    : undefined;
  const tls = services.reloadTls().then(
    (names) => {
      for (const n of names) log.info(`TLS certificate reloaded (${n})`);
    },
    (e) => log.error(`TLS reload failed, keeping the old certificate (${(e as Error).message})`),
  );
  await Promise.all([access, tls]);
}

function fail(message: string): never {
  console.error(`error: ${message}`);
  Deno.exit(2);
}

/** Runs the command line; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let cli: Cli;
  try {
    cli = parseArgs(args);
  } catch (e) {
    fail((e as Error).message);
  }
  if (cli.command === "help") {
    console.log(USAGE);
    return 0;
  }
  if (cli.command === "version") {
    console.log(`iroh-relay-deno ${VERSION} (git ${GIT_HASH}, deno ${Deno.version.deno})`);
    return 0;
  }
  if (cli.command === "hash-password") {
    let pw: string;
    try {
      pw = await readPassword();
    } catch (e) {
      if (e instanceof PasswordAborted) fail(e.message);
      throw e;
    }
    console.log(await hashPassword(pw));
    return 0;
  }
  let loaded;
  try {
    loaded = await configFor(cli);
  } catch (e) {
    if (e instanceof ConfigError) {
      // The warnings first: a misspelled key often explains the error.
      const early = createLogger({ format: cli.logFormat ?? "text" });
      for (const w of e.warnings) early.warn(`config ${w}`);
      fail(`config ${e.message}`);
    }
    throw e;
  }
  const { config, warnings } = loaded;
  const log = createLogger({ level: config.log.level, format: config.log.format });
  for (const w of warnings) log.warn(`config ${w}`);
  const where = cli.configPath ?? "defaults";
  if (cli.command === "check-config") {
    const report = await checkConfig(config, hostname());
    // Beyond syntax: the files a LetsEncrypt table names must be usable here.
    const acmeProblems = config.tls?.acme ? await checkAcmeSetup(config.tls.acme) : [];
    for (const p of acmeProblems) {
      if (!report.errors.some((e) => e.key === p.key)) report.errors.push(new ConfigError(p.key, p.problem));
    }
    for (const w of report.warnings) log.warn(`config ${w}`);
    for (const e of report.errors) console.error(`error: config ${where}: ${e.message}`);
    if (report.errors.length > 0) return 2;
    const count = warnings.length + report.warnings.length;
    console.log(`${where}: ok${count ? ` (${count} warning(s))` : ""}`);
    for (const line of report.lines) console.log(line);
    return 0;
  }
  // Every file the config names, checked before anything starts, so a missing one is named by its key.
  const files = await checkConfigFiles(config);
  for (const w of files.warnings) log.warn(`config ${w}`);
  if (files.errors[0]) fail(`config ${where}: ${files.errors[0].message}`);
  // Signals are handled from before the first listener opens, so an early SIGTERM or
  // SIGHUP (a fast `systemctl reload`) is never lost or fatal.
  const stopped = Promise.withResolvers<string>();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => stopped.resolve(sig));
  let services: Services | undefined;
  Deno.addSignalListener("SIGHUP", () => {
    if (!services) return;
    log.info("SIGHUP: reloading access control and TLS certificates");
    reloadOnSighup(cli, services, log).then(
      () => log.info("SIGHUP: reload done"),
      (e) => log.error(`SIGHUP reload: ${(e as Error).message}`),
    );
  });
  try {
    services = await startServices(config, log);
  } catch (e) {
    if (e instanceof ConfigError) fail(`config ${e.message}`);
    fail(`cannot start: ${explainListenError(e, config, cli.dev) ?? (e as Error).message}`);
  }
  const bound = services.relay?.httpsAddr ?? services.relay?.httpAddr;
  const told = clientRelayUrl(config, hostname(), bound && { hostname: bound.hostname, port: bound.port });
  log.info(
    `iroh-relay-deno ${VERSION} running${cli.dev ? " (dev mode)" : ""}${
      told ? `; relay URL for clients: ${told.url}` : ""
    }`,
  );
  const short = told?.advertised ? shortHostWarning(told.url) : undefined;
  if (short) log.warn(short);
  const sig = await stopped.promise;
  log.info(`${sig}: shutting down`);
  await services.close();
  log.info("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
