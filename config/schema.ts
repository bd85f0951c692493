/**
 * @module
 * Pure validation of the TOML config: parsed object in, typed {@link Config}
 * with defaults out, plus warnings for keys we do not know.
 *
 * The top level is iroh-relay's own `iroh-relay.toml` (spec §6, `main.rs` at
 * v0.35.0 and v1.0.3), so an existing file works unchanged. Our services get
 * their own tables: `[imap]` (METADATA discovery) and `[log]`.
 *
 * Each table has its own file (`relay.ts` with `access.ts` and `tls.ts`,
 * `imap.ts`, `mesh.ts`, `mailbox.ts`, `discovery.ts`), on the machinery of
 * `reader.ts`; this file assembles them and decides strictness.
 *
 * Every problem is a {@link ConfigError} naming the key path, so `main.ts`
 * can print one line and exit 2. No I/O here: environment overrides come in
 * as a plain record.
 *
 * Known keys are the keys the validation code asks for ({@link Reader}
 * records every name it is asked about), so a new table or key is known as
 * soon as it is read; an unknown key is an error unless `strict = false`
 * (or `--no-strict`), with the closest known key suggested. So read every
 * key of a table whatever the other keys say (or at least ask `has()`): a
 * key read only on some paths is "unknown" on the others.
 */

import { type DiscoveryConfig, readDiscovery } from "./discovery.ts";
import { type ImapConfig, readImap } from "./imap.ts";
import { type MailboxConfig, readMailbox } from "./mailbox.ts";
import { type MeshConfig, readMesh } from "./mesh.ts";
import { ConfigError, didYouMean, Reader, type Table, type UnknownKey, unknownKeys } from "./reader.ts";
import { readRelay, type RelayConfig } from "./relay.ts";

export type { AccessConfig } from "./access.ts";
export { type ImapConfig, type ImapLimits, type ImapUpstream, PASSWORD_HASH } from "./imap.ts";
export { defaultDataDir, type MailboxConfig } from "./mailbox.ts";
export { DEFAULT_MESH_PREFIX, DEFAULT_REDIS_URL, type MeshConfig, meshConfigFromEnv } from "./mesh.ts";
export { type BindAddr, ConfigError, formatBindAddr, parseBindAddr, Reader } from "./reader.ts";
export {
  type AdmissionConfig,
  DEFAULT_STUN_PORT,
  deriveRelayUrl,
  RELAY_ADMISSION_DEFAULTS,
  type RelayConfig,
  type RelayLimits,
  TLS_HANDSHAKE_TIMEOUT_MS,
} from "./relay.ts";
export { type AcmeConfig, LETS_ENCRYPT_DIRECTORY, type TlsConfig } from "./tls.ts";

/** `[log]`. */
export interface LogConfig {
  /** Lowest level written. */
  level: "debug" | "info" | "warn" | "error";
  /** `text` lines or one JSON object per line. */
  format: "text" | "json";
}

/** The validated configuration: the relay's keys, then one entry per service table. */
export interface Config extends RelayConfig {
  /** `[imap]`, if present. */
  imap?: ImapConfig;
  /** `[log]`. */
  log: LogConfig;
  /** `[mesh]`, if present. */
  mesh?: MeshConfig;
  /** `[mailbox]`, if present. */
  mailbox?: MailboxConfig;
  /** `[discovery]` (pkarr relay + DNS), if present. */
  discovery?: DiscoveryConfig;
}

/** Inputs besides the parsed file. */
export interface SchemaEnv {
  /** Environment variables (IROH_RELAY_HTTP_BEARER_TOKEN, IROH_RELAY_ACCESS_TOKEN, IROH_RELAY_MESH_REDIS_URL). */
  env?: Record<string, string | undefined>;
  /** `--dev`: relay on `[::]:3340`, plain HTTP, metrics off. */
  dev?: boolean;
  /** This machine's host name, for the derived relay URL. */
  hostname?: string;
  /** `--no-strict` passes false: unknown keys are warnings even without `strict = false`. */
  strict?: boolean;
}

/**
 * Validates a parsed TOML document.
 *
 * Unknown keys are refused (a typo must not fall back to a public default)
 * unless the file says `strict = false` or `envIn.strict` is false; then they
 * are warnings. When another problem stops validation, the unknown keys that
 * look like typos of known ones come with the error as
 * {@link ConfigError.warnings}, since they often explain it.
 *
 * @returns the config and warnings (unknown or ignored keys)
 * @throws {ConfigError} the first problem found
 */
export function validateConfig(doc: Table, envIn: SchemaEnv = {}): { config: Config; warnings: string[] } {
  const warnings: string[] = [];
  const readers: Reader[] = [];
  const r = new Reader(doc, "", readers);
  let result: Config;
  let strict = true;
  try {
    strict = r.bool("strict", true) && envIn.strict !== false;
    result = validateTables(r, readers, warnings, envIn).config;
  } catch (e) {
    if (e instanceof ConfigError) {
      // Only near-misses: a table the error interrupted has not asked for all its keys yet.
      const typos = unknownKeys(readers).filter((u) => u.typo);
      e.warnings = [...warnings, ...typos.map((u) => `${u.key}: unknown key${didYouMean(u)}`)];
    }
    throw e;
  }
  const unknown = unknownKeys(readers);
  if (strict && unknown.length > 0) {
    const [first, ...rest] = unknown as [UnknownKey, ...UnknownKey[]];
    const err = new ConfigError(
      first.key,
      `unknown key${didYouMean(first)}${rest.length ? ` (and ${rest.length} more above)` : ""}; ` +
        "fix the name, or set `strict = false` at the top of the file (or pass --no-strict) to only warn",
    );
    err.warnings = [...warnings, ...rest.map((u) => `${u.key}: unknown key${didYouMean(u)}`)];
    throw err;
  }
  for (const u of unknown) warnings.push(`${u.key}: unknown key, ignored${didYouMean(u)}`);
  return { config: result, warnings };
}

/** Reads every table of the document; `r` is the top level, `readers` collects every table read. */
function validateTables(
  r: Reader,
  readers: Reader[],
  warnings: string[],
  envIn: SchemaEnv,
): { config: Config; warnings: string[] } {
  const env = envIn.env ?? {};

  const relay = readRelay(r, readers, warnings, { dev: envIn.dev, env });
  const { enableRelay, httpBindAddr, tls } = relay;

  const log = readLog(r, readers);
  const mesh = readMesh(r, readers, env);
  const imap = readImap(r, readers, { tls, httpBindAddr, hostname: envIn.hostname ?? "localhost" });
  const mailbox = readMailbox(r, readers, env, warnings);
  if (mailbox && !enableRelay) {
    throw new ConfigError("mailbox", "is served on the relay listener: it needs enable_relay = true");
  }
  const discovery = readDiscovery(r, readers, { httpBindAddr, env });
  if (discovery && !enableRelay) {
    warnings.push("discovery: enable_relay = false, so /pkarr and /dns-query are not served (DNS still is)");
  }

  return {
    config: {
      ...relay,
      ...(imap ? { imap } : {}),
      log,
      ...(mesh ? { mesh } : {}),
      ...(mailbox ? { mailbox } : {}),
      ...(discovery ? { discovery } : {}),
    },
    warnings,
  };
}

function readLog(r: Reader, readers: Reader[]): LogConfig {
  const l = r.table("log");
  if (!l) return { level: "info", format: "text" };
  readers.push(l);
  return {
    level: l.oneOf("level", ["debug", "info", "warn", "error"] as const, "info"),
    format: l.oneOf("format", ["text", "json"] as const, "text"),
  };
}
