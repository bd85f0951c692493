/**
 * @module
 * Command line entry: parse flags, load the config, start every service it
 * enables (relay, IMAP METADATA listener, mailbox, discovery: pkarr + DNS),
 * stop cleanly on SIGINT/SIGTERM, reload on SIGHUP. The services themselves
 * are assembled in `cli/services.ts`.
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
  loadConfig,
  shortHostWarning,
} from "./config/mod.ts";
import {
  checkConfig,
  explainListenError,
  GIT_HASH,
  PasswordAborted,
  readPassword,
  type Services,
  startMallocTrim,
  startServices,
  VERSION,
} from "./cli/mod.ts";
import { createLogger, type Logger } from "./log/mod.ts";
import type { RelayService } from "./relay/mod.ts";
import { hashPassword } from "./imap_metadata/mod.ts";
import { checkAcmeSetup } from "./acme/mod.ts";

export { GIT_HASH, type Services, type ServiceTuning, startServices, VERSION } from "./cli/mod.ts";

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
  // Memory freed after a flood of connections goes back to the system (cli/malloc_trim.ts).
  const trim = startMallocTrim(log);
  const sig = await stopped.promise;
  log.info(`${sig}: shutting down`);
  trim.stop();
  await services.close();
  log.info("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
