/**
 * @module
 * Pure validation of the TOML config: parsed object in, typed {@link Config}
 * with defaults out, plus warnings for keys we do not know.
 *
 * The top level is iroh-relay's own `iroh-relay.toml` (spec §6, `main.rs` at
 * v0.35.0 and v1.0.3), so an existing file works unchanged. Our services get
 * their own tables: `[imap]` (METADATA discovery) and `[log]`.
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

import { parseKeyText } from "./key_text.ts";
import { parseRedisUrl, type RedisTarget } from "../redis/mod.ts";
import { type DiscoveryConfig, readDiscovery } from "./discovery.ts";
import { closestKey } from "./suggest.ts";

/** A `host:port` listen address. */
export interface BindAddr {
  /** IP literal or host name, without brackets. */
  hostname: string;
  /** TCP/UDP port; 0 picks a free one. */
  port: number;
}

/** Let's Encrypt's ACME directories (`prod_tls = true` / `false`). */
export const LETS_ENCRYPT_DIRECTORY = {
  production: "https://acme-v02.api.letsencrypt.org/directory",
  staging: "https://acme-staging-v02.api.letsencrypt.org/directory",
} as const;

/** `[tls] cert_mode = "LetsEncrypt"`: certificates from an ACME CA, obtained and renewed by the service. */
export interface AcmeConfig {
  /** Names the certificate is for (`[tls] hostname`), at least one. */
  hostnames: string[];
  /** Contact e-mail address, without `mailto:` (`[tls] contact`). */
  contact: string;
  /** ACME directory: `acme_directory_url`, `IROH_RELAY_ACME_URL`, else Let's Encrypt per `prod_tls`. */
  directoryUrl: string;
  /** PEM file of extra CAs trusted for the ACME server's HTTPS only (`acme_ca_file`, `IROH_RELAY_ACME_CA`). */
  caFile?: string;
  /** Where account key and certificate are kept (`[tls] cert_dir`). */
  certDir: string;
}

/** `[tls]`: PEM files served by the relay (and by IMAP unless it has its own). */
export interface TlsConfig {
  /** `Manual` (read once; SIGHUP reloads), `Reloading` (also re-read every 24 h) or `LetsEncrypt` (ACME). */
  certMode: "Manual" | "Reloading" | "LetsEncrypt";
  /** ACME settings, present exactly when `certMode` is `LetsEncrypt`. */
  acme?: AcmeConfig;
  /** HTTPS listener of the relay. */
  httpsBindAddr: BindAddr;
  /** QUIC address discovery listener (parsed; QAD is not served). */
  quicBindAddr: BindAddr;
  /** Public host names (first one is used to build URLs). */
  hostnames: string[];
  /** Certificate chain PEM path (with ACME: the file the service writes). */
  certPath: string;
  /** Private key PEM path. */
  keyPath: string;
  /** Serve plain HTTP even though `[tls]` exists (upstream `--dev` sets this). */
  dangerousHttpOnly: boolean;
}

/** `[imap.upstream]`: the real IMAP server behind the proxy. */
export interface ImapUpstream {
  /** Host name or IP. */
  host: string;
  /** Port (default 993 with TLS, 143 without). */
  port: number;
  /** Connect with implicit TLS. */
  tls: boolean;
  /** Check the upstream certificate (on by default). */
  verifyCertificate: boolean;
  /** Extra CA certificate PEM file to trust (e.g. a self-signed upstream). */
  caFile?: string;
  /** TLS server name if not `host`. */
  serverName?: string;
}

/**
 * Connection admission of one listener group (`[limits]` for the relay,
 * `[imap.limits]` for IMAP): the shape `admission/`'s gate takes.
 */
export interface AdmissionConfig {
  /** Connections open at once, all sources. */
  maxConnections: number;
  /** Slots kept for sources holding fewer than 4 connections. */
  reserve: number;
  /** Connections open at once per IPv4 address / IPv6 /64. */
  maxPerSource: number;
  /** New connections per second per source (0: no rate limit). */
  perSecond: number;
  /** Burst of new connections per source. */
  burst: number;
}

/** Defaults of `[limits]` admission (CONTRACT, issue 9). */
export const RELAY_ADMISSION_DEFAULTS: Readonly<AdmissionConfig> = {
  maxConnections: 16384,
  reserve: 256,
  maxPerSource: 256,
  perSecond: 32,
  burst: 128,
};

/** Default TLS handshake deadline, ms. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** `[imap.limits]`. */
export interface ImapLimits {
  /** Concurrent sessions; more are greeted with `* BYE` and closed. */
  maxSessions: number;
  /** Concurrent sessions per IPv4 address / IPv6 /64. */
  maxSessionsPerSource: number;
  /** New connections per second per source (0: no rate limit). */
  sourceConnectsPerSec: number;
  /** Burst of new connections per source. */
  sourceConnectsBurst: number;
  /** Longest command line, bytes. */
  maxLineBytes: number;
  /** Largest literal a client may announce in standalone mode, bytes. */
  maxLiteralBytes: number;
  /** Largest literal relayed in proxy mode (APPEND), bytes. */
  maxProxyLiteralBytes: number;
  /** Close a session idle this long (RFC 3501: at least 30 min), ms. */
  idleTimeoutMs: number;
  /** Close a session not logged in after this long, ms. */
  loginTimeoutMs: number;
  /** Delay before answering a failed login, ms. */
  failedLoginDelayMs: number;
  /** Proxy mode: bytes of replies and commands held while the upstream has not answered; over it, `* BYE`. */
  maxPendingReplyBytes: number;
  /** Password checks (PBKDF2) running at once. */
  passwordCheckConcurrency: number;
  /** Password checks waiting for a place; more are answered `NO [UNAVAILABLE]` at once. */
  maxPendingPasswordChecks: number;
}

/** `[imap]`: the METADATA discovery listener. */
export interface ImapConfig {
  /** Plain IMAP listener, if any. */
  bindAddr?: BindAddr;
  /** Implicit-TLS IMAP listener, if any. */
  tlsBindAddr?: BindAddr;
  /** Certificate for `tls_bind_addr` (default: `[tls]` files). */
  certPath?: string;
  /** Key for `tls_bind_addr` (default: `[tls]` files). */
  keyPath?: string;
  /** `standalone` answers everything itself; `proxy` fronts `[imap.upstream]`. */
  mode: "standalone" | "proxy";
  /** URL advertised as `/shared/vendor/deltachat/irohrelay`. */
  irohRelayUrl: string;
  /** True if {@link irohRelayUrl} was derived rather than configured. */
  irohRelayUrlDerived: boolean;
  /** Server entries by lowercase name (`/shared/comment`, `/shared/admin`, …). */
  entries: Map<string, string>;
  /** Who may log in. */
  login: "any" | "users" | "upstream";
  /** `[imap.users]`: user name → password hash. */
  users: Map<string, string>;
  /** `[imap.upstream]`, required in proxy mode. */
  upstream?: ImapUpstream;
  /** `[imap.limits]`. */
  limits: ImapLimits;
}

/** `[log]`. */
export interface LogConfig {
  /** Lowest level written. */
  level: "debug" | "info" | "warn" | "error";
  /** `text` lines or one JSON object per line. */
  format: "text" | "json";
}

/** Settings both mesh backends share. */
interface MeshCommon {
  /** Prefix of Redis channels or KV keys: relays sharing one Redis or database need distinct ones. */
  prefix: string;
  /** This instance's id (default: random per start). */
  instanceId?: string;
}

/**
 * `[mesh]`: several relay instances serving one relay URL (see
 * `relay/server/mesh.ts`), linked through Redis pub/sub or Deno KV.
 */
export type MeshConfig =
  | MeshCommon & {
    /** Redis pub/sub (self-hosted scale-out). */
    backend: "redis";
    /** Server and credentials from `redis_url` (or `IROH_RELAY_MESH_REDIS_URL`). */
    redis: RedisTarget;
  }
  | MeshCommon & {
    /** Deno KV (the new Deno Deploy; or a local file shared by processes). */
    backend: "kv";
    /** Local KV file; absent: the platform's default database. */
    kvPath?: string;
    /** Poll of the wake key, ms (0: watch only); absent: the backend's default. */
    pollMs?: number;
  };

/** Default STUN port (upstream `DEFAULT_STUN_PORT`). */
export const DEFAULT_STUN_PORT = 3478;

/** Default `[mesh] channel_prefix`. */
export const DEFAULT_MESH_PREFIX = "iroh-relay";
/** Default `[mesh] redis_url`. */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/**
 * `[mailbox]`: the store-and-forward mailbox for P2P Matrix servers
 * (Dendrite's relay API), served on the relay listener.
 */
export interface MailboxConfig {
  /** Names accepted as X-Matrix `destination`; empty: any (a warning says so). */
  serverNames: string[];
  /** Most entries waiting for one recipient. */
  maxEntriesPerRecipient: number;
  /** Most bytes waiting for one recipient. */
  maxBytesPerRecipient: number;
  /** Most bytes all mailboxes together may hold. */
  maxTotalBytes: number;
  /** Largest request body, bytes. */
  maxBodyBytes: number;
  /** Unread entries are deleted after this long, seconds. */
  expirySecs: number;
  /** Deposits per second per sender. */
  senderRatePerSecond: number;
  /** Deposits a sender may make at once. */
  senderBurst: number;
  /** Where entries live: embedded SQLite (one instance) or Redis (several). */
  store: "sqlite" | "redis";
  /** Redis server (store = "redis"). */
  redis?: RedisTarget;
  /** Prefix of the Redis keys. */
  redisPrefix: string;
  /** Directory of the SQLite file (store = "sqlite"). */
  dataDir: string;
  /** SQLite commit durability: `normal` survives kill -9, `full` also power loss (fsync per deposit). */
  sqliteSynchronous: "normal" | "full";
  /** True if {@link dataDir} is the default rather than configured. */
  dataDirDerived: boolean;
}

/**
 * The data directory used when none is configured: systemd's
 * `$STATE_DIRECTORY` (the unit sets `StateDirectory=`), else
 * `$XDG_STATE_HOME/iroh-relay-deno`, else `~/.local/state/iroh-relay-deno`,
 * else `./data`.
 */
export function defaultDataDir(env: Record<string, string | undefined>): string {
  const state = env["STATE_DIRECTORY"]?.split(":")[0];
  if (state) return state;
  if (env["XDG_STATE_HOME"]) return `${env["XDG_STATE_HOME"]}/iroh-relay-deno`;
  if (env["HOME"]) return `${env["HOME"]}/.local/state/iroh-relay-deno`;
  return "./data";
}

/** Access configuration, as validated from the TOML `access` key. */
export type AccessConfig =
  | { mode: "everyone" }
  | { mode: "allowlist"; keys: Uint8Array[] }
  | { mode: "denylist"; keys: Uint8Array[] }
  | { mode: "http"; url: string; bearerToken?: string; maxInFlight?: number }
  | { mode: "shared_token"; tokens: string[] };

/** The validated configuration. */
export interface Config {
  /** Run the relay (upstream 1.x honours `false`). */
  enableRelay: boolean;
  /** Plain HTTP listener: the relay, or only the captive portal when TLS is on. */
  httpBindAddr: BindAddr;
  /** STUN server (0.35 clients use it to learn their public address). */
  enableStun: boolean;
  /** STUN UDP listener (default: the IP of `http_bind_addr`, port 3478). */
  stunBindAddr: BindAddr;
  /** QUIC address discovery (parsed, not served). */
  enableQuicAddrDiscovery: boolean;
  /** Serve Prometheus metrics. */
  enableMetrics: boolean;
  /** Metrics listener. */
  metricsBindAddr: BindAddr;
  /** Key validity cache size. */
  keyCacheCapacity: number;
  /** Access policy. */
  access: AccessConfig;
  /** `[limits]`. */
  limits: {
    /** Per-source and global admission on the relay port(s); always set (defaults below). */
    admission: AdmissionConfig;
    /** TLS handshake deadline on the relay and IMAPS listeners, ms (`tls_handshake_timeout_secs`). */
    tlsHandshakeTimeoutMs: number;
    /** New connections per second per listener (token bucket). */
    acceptConnLimit?: number;
    /** Burst of new connections. */
    acceptConnBurst?: number;
    /** `[limits.client.rx]`. */
    clientRx?: { bytesPerSecond: number; maxBurstBytes?: number };
  };
  /** `[tls]`, if present. */
  tls?: TlsConfig;
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

/** A config problem: `key` is the dotted path, `message` what is wrong. */
export class ConfigError extends Error {
  /** Dotted key path, e.g. `limits.client.rx.bytes_per_second`. */
  readonly key: string;
  /** What is wrong with it. */
  readonly problem: string;
  /** Config file the key is in, when known. */
  readonly file: string | undefined;
  /** Warnings found before the error (unknown keys that may explain it): print them first. */
  warnings: string[] = [];
  /** @param key dotted path; @param problem what is wrong; @param file where */
  constructor(key: string, problem: string, file?: string) {
    super(file !== undefined && file !== key ? `${file}: ${key}: ${problem}` : `${key}: ${problem}`);
    this.name = "ConfigError";
    this.key = key;
    this.problem = problem;
    this.file = file;
  }
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

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/**
 * Reads typed values from one table, remembering every key name it was asked
 * about: those are the table's known keys (section files use it too). Readers
 * of sub-tables join the `registry` of their parent, so every table read is
 * checked for unknown keys.
 */
export class Reader {
  readonly #t: Table;
  readonly #path: string;
  readonly #seen = new Set<string>();
  readonly #registry: Reader[];

  constructor(t: Table, path: string, registry: Reader[] = []) {
    this.#t = t;
    this.#path = path;
    this.#registry = registry;
    registry.push(this);
  }

  /** Dotted path of this table ("" at the top). */
  get path(): string {
    return this.#path;
  }

  key(k: string): string {
    return this.#path ? `${this.#path}.${k}` : k;
  }

  has(k: string): boolean {
    this.#seen.add(k);
    return this.#t[k] !== undefined;
  }

  raw(k: string): unknown {
    this.#seen.add(k);
    return this.#t[k];
  }

  bool(k: string, def: boolean): boolean {
    const v = this.raw(k);
    if (v === undefined) return def;
    if (typeof v !== "boolean") throw new ConfigError(this.key(k), `expected true or false, got ${show(v)}`);
    return v;
  }

  str(k: string): string | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (typeof v !== "string") throw new ConfigError(this.key(k), `expected a string, got ${show(v)}`);
    return v;
  }

  int(k: string, opts: { min?: number; max?: number } = {}): number | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    const n = typeof v === "bigint" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isInteger(n)) {
      throw new ConfigError(this.key(k), `expected an integer, got ${show(v)}`);
    }
    if (opts.min !== undefined && n < opts.min) throw new ConfigError(this.key(k), `must be at least ${opts.min}`);
    if (opts.max !== undefined && n > opts.max) throw new ConfigError(this.key(k), `must be at most ${opts.max}`);
    return n;
  }

  num(k: string, opts: { min?: number } = {}): number | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    const n = typeof v === "bigint" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isFinite(n)) {
      throw new ConfigError(this.key(k), `expected a number, got ${show(v)}`);
    }
    if (opts.min !== undefined && n < opts.min) throw new ConfigError(this.key(k), `must be at least ${opts.min}`);
    return n;
  }

  oneOf<T extends string>(k: string, options: readonly T[], def: T): T {
    const v = this.str(k);
    if (v === undefined) return def;
    if (!options.includes(v as T)) {
      throw new ConfigError(this.key(k), `expected one of ${options.map((o) => `"${o}"`).join(", ")}, got "${v}"`);
    }
    return v as T;
  }

  addr(k: string): BindAddr | undefined {
    const v = this.str(k);
    return v === undefined ? undefined : parseBindAddr(v, this.key(k));
  }

  table(k: string): Reader | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (!isTable(v)) throw new ConfigError(this.key(k), `expected a table, got ${show(v)}`);
    return new Reader(v, this.key(k), this.#registry);
  }

  strings(k: string): string[] | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      throw new ConfigError(this.key(k), `expected a list of strings, got ${show(v)}`);
    }
    return v as string[];
  }

  /** Keys present but never read, as dotted paths. */
  unknown(): string[] {
    return this.unknownNames().map((k) => this.key(k));
  }

  /** Keys present but never read, as names within this table. */
  unknownNames(): string[] {
    return Object.keys(this.#t).filter((k) => !this.#seen.has(k));
  }

  /** Key names the validation asked about so far. */
  known(): ReadonlySet<string> {
    return this.#seen;
  }

  get table_(): Table {
    return this.#t;
  }
}

function show(v: unknown): string {
  if (typeof v === "string") return `"${v}"`;
  if (Array.isArray(v)) return "a list";
  if (isTable(v)) return "a table";
  return String(v);
}

/**
 * Parses `host:port`, `[v6]:port` or `v6-without-brackets:port`.
 * @throws {ConfigError} naming `key`
 */
export function parseBindAddr(text: string, key: string): BindAddr {
  const m = /^\[([0-9a-fA-F:.]+(?:%\w+)?)\]:(\d{1,5})$/.exec(text) ?? /^([^:\[\]]+):(\d{1,5})$/.exec(text);
  if (!m) throw new ConfigError(key, `expected "host:port" or "[ipv6]:port", got "${text}"`);
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigError(key, `port ${port} is out of range`);
  return { hostname: m[1]!, port };
}

/** Formats a bind address back to text. */
export function formatBindAddr(a: BindAddr): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/** Password hash format accepted in `[imap.users]` (see `main.ts hash-password`). */
export const PASSWORD_HASH = /^pbkdf2-sha256\$(\d+)\$([A-Za-z0-9+/=_-]+)\$([A-Za-z0-9+/=_-]+)$/;

/** Keys of the server METADATA namespace we accept in `[imap.metadata]`. */
const ENTRY_NAME = /^\/shared(\/[\x21-\x7e]+)+$/;

/** An unknown key, with the known key it probably meant. */
interface UnknownKey {
  /** Dotted path as written. */
  key: string;
  /** Closest known key (dotted path), if any is close. */
  suggestion?: string;
  /** The suggestion is a near-miss in the same table (not the same name in another one). */
  typo?: true;
}

function unknownKeys(readers: readonly Reader[]): UnknownKey[] {
  const all = [...new Set(readers)];
  const found: UnknownKey[] = [];
  for (const rd of all) {
    for (const name of rd.unknownNames()) {
      const key = rd.key(name);
      const near = closestKey(name, rd.known());
      // Else the right name in the wrong table: `bind_addr` at the top instead of in [imap].
      const elsewhere = near === undefined ? all.find((o) => o !== rd && o.known().has(name))?.key(name) : undefined;
      if (near !== undefined) found.push({ key, suggestion: rd.key(near), typo: true });
      else if (elsewhere !== undefined) found.push({ key, suggestion: elsewhere });
      else found.push({ key });
    }
  }
  return found;
}

function didYouMean(u: UnknownKey): string {
  return u.suggestion === undefined ? "" : ` (did you mean \`${u.suggestion}\`?)`;
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

  const enableRelay = r.bool("enable_relay", true);
  const httpBindAddr = r.addr("http_bind_addr") ?? { hostname: "::", port: envIn.dev ? 3340 : 80 };
  const enableStun = r.bool("enable_stun", true);
  const stunBindAddr = r.addr("stun_bind_addr") ?? { hostname: httpBindAddr.hostname, port: DEFAULT_STUN_PORT };
  const enableQuicAddrDiscovery = r.bool("enable_quic_addr_discovery", false);
  let enableMetrics = r.bool("enable_metrics", true);
  const metricsBindAddr = r.addr("metrics_bind_addr") ?? { hostname: httpBindAddr.hostname, port: 9090 };
  const keyCacheCapacity = r.int("key_cache_capacity", { min: 0 }) ?? 1024 * 1024;

  const access = readAccess(r, env);

  const limits: Config["limits"] = {
    admission: { ...RELAY_ADMISSION_DEFAULTS },
    tlsHandshakeTimeoutMs: TLS_HANDSHAKE_TIMEOUT_MS,
  };
  const lim = r.table("limits");
  if (lim) {
    readers.push(lim);
    const adm = limits.admission;
    adm.maxConnections = lim.int("max_connections", { min: 1 }) ?? adm.maxConnections;
    adm.reserve = lim.int("connection_reserve", { min: 0 }) ?? adm.reserve;
    adm.maxPerSource = lim.int("max_connections_per_source", { min: 1 }) ?? adm.maxPerSource;
    adm.perSecond = lim.num("source_connects_per_sec", { min: 0 }) ?? adm.perSecond;
    adm.burst = lim.int("source_connects_burst", { min: 1 }) ?? adm.burst;
    if (adm.reserve >= adm.maxConnections) {
      throw new ConfigError(
        "limits.connection_reserve",
        `must be less than limits.max_connections (${adm.maxConnections})`,
      );
    }
    const hs = lim.num("tls_handshake_timeout_secs", { min: 0.05 });
    if (hs !== undefined) limits.tlsHandshakeTimeoutMs = hs * 1000;
    const acl = lim.num("accept_conn_limit", { min: 0 });
    const acb = lim.int("accept_conn_burst", { min: 1 });
    if (acl !== undefined) limits.acceptConnLimit = acl;
    if (acb !== undefined) limits.acceptConnBurst = acb;
    if (acb !== undefined && acl === undefined) {
      throw new ConfigError("limits.accept_conn_burst", "needs limits.accept_conn_limit");
    }
    const client = lim.table("client");
    if (client) {
      readers.push(client);
      const rx = client.table("rx");
      if (rx) {
        readers.push(rx);
        const bps = rx.int("bytes_per_second", { min: 1, max: 0xffffffff });
        const burst = rx.int("max_burst_bytes", { min: 1, max: 0xffffffff });
        if (burst !== undefined && bps === undefined) {
          throw new ConfigError("limits.client.rx.max_burst_bytes", "needs limits.client.rx.bytes_per_second");
        }
        if (bps !== undefined) {
          limits.clientRx = burst === undefined
            ? { bytesPerSecond: bps }
            : { bytesPerSecond: bps, maxBurstBytes: burst };
        }
      }
    }
  }

  let tls: TlsConfig | undefined;
  const t = r.table("tls");
  if (t) {
    readers.push(t);
    const mode = t.str("cert_mode");
    if (mode === undefined) throw new ConfigError("tls.cert_mode", "is required in [tls]");
    if (mode !== "Manual" && mode !== "Reloading" && mode !== "LetsEncrypt") {
      throw new ConfigError("tls.cert_mode", `expected "Manual", "Reloading" or "LetsEncrypt", got "${mode}"`);
    }
    const httpsBindAddr = t.addr("https_bind_addr") ?? { hostname: httpBindAddr.hostname, port: 443 };
    const quicBindAddr = t.addr("quic_bind_addr") ?? { hostname: httpsBindAddr.hostname, port: 7842 };
    let hostnames: string[] = [];
    const hv = t.raw("hostname");
    if (typeof hv === "string") hostnames = [hv];
    else if (Array.isArray(hv) && hv.every((h) => typeof h === "string")) hostnames = hv as string[];
    else if (hv !== undefined) throw new ConfigError("tls.hostname", `expected a string or a list of strings`);
    const contact = t.str("contact");
    const prodTls = t.bool("prod_tls", true);
    const certDir = t.str("cert_dir") ?? ".";
    if (certDir === "") throw new ConfigError("tls.cert_dir", "must not be empty");
    let certPath = t.str("manual_cert_path") ?? `${certDir}/default.crt`;
    let keyPath = t.str("manual_key_path") ?? `${certDir}/default.key`;
    const directoryUrl = t.str("acme_directory_url");
    const caFile = t.str("acme_ca_file");
    const dangerousHttpOnly = t.bool("dangerous_http_only", false) || envIn.dev === true;
    let acme: AcmeConfig | undefined;
    if (mode === "LetsEncrypt") {
      acme = readAcme({ hostnames, contact, prodTls, certDir, directoryUrl, caFile }, env);
      for (const k of ["manual_cert_path", "manual_key_path"]) {
        if (t.has(k)) warnings.push(`tls.${k}: ignored with cert_mode = "LetsEncrypt" (certificates live in cert_dir)`);
      }
      if (enableRelay && httpBindAddr.port !== 80) {
        warnings.push(
          `http_bind_addr: the CA validates on port 80 (HTTP-01); port ${httpBindAddr.port} must be reached through a port forward`,
        );
      }
      if (!enableRelay) {
        throw new ConfigError(
          "tls.cert_mode",
          `"LetsEncrypt" answers the CA on the relay's HTTP listener: enable_relay must be true`,
        );
      }
      certPath = `${acme.certDir.replace(/\/+$/, "") || "/"}/acme-cert.pem`;
      keyPath = `${acme.certDir.replace(/\/+$/, "") || "/"}/acme-key.pem`;
    } else {
      for (const [k, v] of [["acme_directory_url", directoryUrl], ["acme_ca_file", caFile]] as const) {
        if (v !== undefined) warnings.push(`tls.${k}: only used with cert_mode = "LetsEncrypt", ignored`);
      }
    }
    tls = {
      certMode: mode,
      ...(acme ? { acme } : {}),
      httpsBindAddr,
      quicBindAddr,
      hostnames,
      certPath,
      keyPath,
      dangerousHttpOnly,
    };
  }
  if (enableQuicAddrDiscovery) {
    if (!tls) throw new ConfigError("enable_quic_addr_discovery", "requires a [tls] section");
    warnings.push(
      "enable_quic_addr_discovery: QUIC address discovery is not served by this relay; clients fall back to /ping probes",
    );
  }
  if (envIn.dev) enableMetrics = false;

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
      enableRelay,
      httpBindAddr,
      enableStun,
      stunBindAddr,
      enableQuicAddrDiscovery,
      enableMetrics,
      metricsBindAddr,
      keyCacheCapacity,
      access,
      limits,
      ...(tls ? { tls } : {}),
      ...(imap ? { imap } : {}),
      log,
      ...(mesh ? { mesh } : {}),
      ...(mailbox ? { mailbox } : {}),
      ...(discovery ? { discovery } : {}),
    },
    warnings,
  };
}

/** A DNS name a CA can validate over HTTP-01: letters, digits, hyphens, dots; no wildcard, no IP. */
const ACME_HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** Checks the LetsEncrypt keys of `[tls]` (upstream: hostname and contact are required). */
function readAcme(
  t: {
    hostnames: string[];
    contact: string | undefined;
    prodTls: boolean;
    certDir: string;
    directoryUrl: string | undefined;
    caFile: string | undefined;
  },
  env: Record<string, string | undefined>,
): AcmeConfig {
  if (t.hostnames.length === 0) {
    throw new ConfigError(
      "tls.hostname",
      `is required with cert_mode = "LetsEncrypt": the public DNS name(s) to certify`,
    );
  }
  t.hostnames.forEach((h, i) => {
    const key = t.hostnames.length > 1 ? `tls.hostname[${i}]` : "tls.hostname";
    if (h.startsWith("*.")) {
      throw new ConfigError(key, `"${h}": wildcards need DNS-01 validation, which is not supported`);
    }
    if (!ACME_HOSTNAME.test(h)) {
      throw new ConfigError(key, `"${h}" is not a DNS name a CA can certify (no IP addresses)`);
    }
  });
  if (t.contact === undefined) {
    throw new ConfigError("tls.contact", `is required with cert_mode = "LetsEncrypt": an e-mail address for the CA`);
  }
  const contact = t.contact.replace(/^mailto:/i, "");
  if (!/^[^@\s:,]+@[^@\s:,]+\.[^@\s:,]+$/.test(contact)) {
    throw new ConfigError("tls.contact", `expected an e-mail address, got "${t.contact}"`);
  }
  const fromEnv = env["IROH_RELAY_ACME_URL"];
  const urlKey = fromEnv !== undefined ? "IROH_RELAY_ACME_URL" : "tls.acme_directory_url";
  const directoryUrl = fromEnv ?? t.directoryUrl ??
    (t.prodTls ? LETS_ENCRYPT_DIRECTORY.production : LETS_ENCRYPT_DIRECTORY.staging);
  let u: URL;
  try {
    u = new URL(directoryUrl);
  } catch {
    throw new ConfigError(urlKey, `"${directoryUrl}" is not a URL`);
  }
  if (u.protocol !== "https:") {
    throw new ConfigError(urlKey, `must be an https:// URL (RFC 8555), got "${directoryUrl}"`);
  }
  const caFile = env["IROH_RELAY_ACME_CA"] ?? t.caFile;
  if (caFile === "") throw new ConfigError("tls.acme_ca_file", "must not be empty");
  return {
    hostnames: t.hostnames.map((h) => h.toLowerCase()),
    contact,
    directoryUrl,
    ...(caFile !== undefined ? { caFile } : {}),
    certDir: t.certDir,
  };
}

function readAccess(r: Reader, env: Record<string, string | undefined>): AccessConfig {
  const v = r.raw("access");
  let access: AccessConfig;
  if (v === undefined || v === "everyone") {
    access = { mode: "everyone" };
  } else if (typeof v === "string") {
    throw new ConfigError(
      "access",
      `expected "everyone" or a table (allowlist, denylist, http, shared_token), got "${v}"`,
    );
  } else if (isTable(v)) {
    const variants = Object.keys(v);
    if (variants.length !== 1) {
      throw new ConfigError(
        "access",
        `expected exactly one of allowlist, denylist, http, shared_token; got ${variants.join(", ") || "none"}`,
      );
    }
    const kind = variants[0]!;
    const a = new Reader(v, "access");
    switch (kind) {
      case "allowlist":
      case "denylist": {
        const ids = a.strings(kind)!;
        const keys = ids.map((id, i) => {
          try {
            return parseKeyText(id);
          } catch (e) {
            throw new ConfigError(`access.${kind}[${i}]`, (e as Error).message);
          }
        });
        access = { mode: kind, keys };
        break;
      }
      case "http": {
        const h = a.table("http")!;
        const url = h.str("url");
        if (url === undefined) throw new ConfigError("access.http.url", "is required");
        try {
          new URL(url);
        } catch {
          throw new ConfigError("access.http.url", `"${url}" is not a URL`);
        }
        // Read the file's token even when the environment overrides it, so it is not taken for an unknown key.
        const fileToken = h.str("bearer_token");
        const bearerToken = env["IROH_RELAY_HTTP_BEARER_TOKEN"] ?? fileToken;
        // Ours, not upstream's: requests to the hook at once (default 64 in relay/server/access.ts).
        const maxInFlight = h.int("max_in_flight", { min: 1, max: 65536 });
        for (const k of h.unknownNames()) {
          const near = closestKey(k, h.known());
          throw new ConfigError(h.key(k), `unknown key${near ? ` (did you mean \`${h.key(near)}\`?)` : ""}`);
        }
        access = {
          mode: "http",
          url,
          ...(bearerToken ? { bearerToken } : {}),
          ...(maxInFlight !== undefined ? { maxInFlight } : {}),
        };
        break;
      }
      case "shared_token": {
        const tokens = a.strings("shared_token")!;
        if (tokens.length === 0) throw new ConfigError("access.shared_token", "must list at least one token");
        tokens.forEach((tok, i) => {
          if (tok === "") throw new ConfigError(`access.shared_token[${i}]`, "must not be empty");
        });
        access = { mode: "shared_token", tokens };
        break;
      }
      default:
        throw new ConfigError(
          `access.${kind}`,
          "unknown access mode: expected allowlist, denylist, http or shared_token",
        );
    }
  } else {
    throw new ConfigError("access", `expected "everyone" or a table, got ${show(v)}`);
  }
  const envToken = env["IROH_RELAY_ACCESS_TOKEN"];
  if (envToken !== undefined) {
    if (envToken === "") throw new ConfigError("IROH_RELAY_ACCESS_TOKEN", "must not be empty");
    access = { mode: "shared_token", tokens: [envToken] };
  }
  return access;
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

/** Instance ids and channel prefixes: short, printable, safe in channel names, KV keys and log lines. */
const MESH_NAME = /^[A-Za-z0-9._:-]{1,64}$/;

function readMesh(r: Reader, readers: Reader[], env: Record<string, string | undefined>): MeshConfig | undefined {
  const m = r.table("mesh");
  if (!m) return undefined;
  readers.push(m);
  if (!m.has("backend")) throw new ConfigError("mesh.backend", `is required in [mesh]: "redis" or "kv"`);
  const backend = m.oneOf("backend", ["redis", "kv"] as const, "redis");
  const name = (k: string): string | undefined => {
    const v = m.str(k);
    if (v !== undefined && !MESH_NAME.test(v)) {
      throw new ConfigError(m.key(k), `expected 1 to 64 of A-Z a-z 0-9 . _ : -, got "${v}"`);
    }
    return v;
  };
  const common: MeshCommon = { prefix: name("channel_prefix") ?? DEFAULT_MESH_PREFIX };
  const instanceId = name("instance_id");
  if (instanceId !== undefined) common.instanceId = instanceId;
  const only = (k: string, wanted: MeshConfig["backend"]) => {
    if (m.has(k) && backend !== wanted) {
      throw new ConfigError(m.key(k), `only applies to backend = "${wanted}" (backend is "${backend}")`);
    }
  };
  only("redis_url", "redis");
  only("kv_path", "kv");
  only("kv_poll_ms", "kv");
  if (backend === "redis") {
    // Read the file's URL even when the environment overrides it, so it is not taken for an unknown key.
    const fileUrl = m.str("redis_url");
    const fromEnv = env["IROH_RELAY_MESH_REDIS_URL"];
    const key = fromEnv !== undefined ? "IROH_RELAY_MESH_REDIS_URL" : "mesh.redis_url";
    let redis: RedisTarget;
    try {
      redis = parseRedisUrl(fromEnv ?? fileUrl ?? DEFAULT_REDIS_URL);
    } catch (e) {
      throw new ConfigError(key, (e as Error).message);
    }
    return { ...common, backend, redis };
  }
  const kvPath = m.str("kv_path");
  if (kvPath === "") throw new ConfigError("mesh.kv_path", "must not be empty (omit it for the platform's database)");
  const pollMs = m.int("kv_poll_ms", { min: 0, max: 60_000 });
  return {
    ...common,
    backend,
    ...(kvPath !== undefined ? { kvPath } : {}),
    ...(pollMs !== undefined ? { pollMs } : {}),
  };
}

/** Server names in `[mailbox] server_names`: printable, no spaces or quotes (they go into headers and logs). */
const SERVER_NAME = /^[A-Za-z0-9.:[\]-]{1,255}$/;

function readMailbox(
  r: Reader,
  readers: Reader[],
  env: Record<string, string | undefined>,
  warnings: string[],
): MailboxConfig | undefined {
  const m = r.table("mailbox");
  if (!m) return undefined;
  readers.push(m);
  const serverNames = m.strings("server_names") ?? [];
  for (const n of serverNames) {
    if (!SERVER_NAME.test(n)) throw new ConfigError("mailbox.server_names", `"${n}" is not a server name`);
  }
  if (serverNames.length === 0) {
    warnings.push(
      "mailbox.server_names: empty, so any X-Matrix destination is accepted; list the names senders use for this relay",
    );
  }
  const store = m.oneOf("store", ["sqlite", "redis"] as const, "sqlite");
  if (m.has("redis_url") && store !== "redis") {
    throw new ConfigError("mailbox.redis_url", `only applies to store = "redis" (store is "${store}")`);
  }
  let redis: RedisTarget | undefined;
  const fileUrl = m.str("redis_url");
  if (store === "redis") {
    const fromEnv = env["IROH_RELAY_MAILBOX_REDIS_URL"];
    try {
      redis = parseRedisUrl(fromEnv ?? fileUrl ?? DEFAULT_REDIS_URL);
    } catch (e) {
      throw new ConfigError(
        fromEnv !== undefined ? "IROH_RELAY_MAILBOX_REDIS_URL" : "mailbox.redis_url",
        (e as Error).message,
      );
    }
  }
  const redisPrefix = m.str("redis_prefix") ?? "mailbox";
  if (!MESH_NAME.test(redisPrefix)) {
    throw new ConfigError("mailbox.redis_prefix", `expected 1 to 64 of A-Z a-z 0-9 . _ : -, got "${redisPrefix}"`);
  }
  const dataDirSet = m.str("data_dir");
  if (dataDirSet === "") throw new ConfigError("mailbox.data_dir", "must not be empty (omit it for the default)");
  const MiB = 1024 * 1024;
  const maxBytesPerRecipient = m.int("max_bytes_per_recipient", { min: 1024 }) ?? 16 * MiB;
  const maxTotalBytes = m.int("max_total_bytes", { min: 1024 }) ?? 1024 * MiB;
  if (maxTotalBytes < maxBytesPerRecipient) {
    throw new ConfigError("mailbox.max_total_bytes", "must be at least max_bytes_per_recipient");
  }
  return {
    serverNames,
    maxEntriesPerRecipient: m.int("max_entries_per_recipient", { min: 1 }) ?? 1000,
    maxBytesPerRecipient,
    maxTotalBytes,
    // The Redis client refuses bulk replies over 8 MiB; a Matrix transaction is 50 PDUs of at most 64 KiB.
    maxBodyBytes: m.int("max_body_bytes", { min: 1024, max: 8 * MiB }) ?? MiB,
    expirySecs: m.int("expiry_secs", { min: 1 }) ?? 7 * 24 * 3600,
    senderRatePerSecond: m.num("sender_rate_per_second", { min: 0.001 }) ?? 20,
    senderBurst: m.int("sender_burst", { min: 1 }) ?? 200,
    store,
    ...(redis ? { redis } : {}),
    redisPrefix,
    dataDir: dataDirSet ?? defaultDataDir(env),
    sqliteSynchronous: m.oneOf("sqlite_synchronous", ["normal", "full"] as const, "normal"),
    dataDirDerived: dataDirSet === undefined,
  };
}

/**
 * `[mesh]` from the environment, for the edge entry (`deploy/edge.ts`),
 * where a config file is optional: `RELAY_MESH` = `kv` or `redis`, with
 * `RELAY_MESH_KV_PATH`, `RELAY_MESH_KV_POLL_MS`, `RELAY_MESH_REDIS_URL`,
 * `RELAY_MESH_PREFIX`, `RELAY_MESH_INSTANCE_ID`. Undefined without `RELAY_MESH`.
 * @throws {ConfigError} naming the variable
 */
export function meshConfigFromEnv(env: Record<string, string | undefined>): MeshConfig | undefined {
  const backend = env["RELAY_MESH"];
  if (backend === undefined || backend === "") return undefined;
  if (backend !== "kv" && backend !== "redis") {
    throw new ConfigError("RELAY_MESH", `expected "kv" or "redis", got "${backend}"`);
  }
  const table: Table = { backend };
  const names: [string, string][] = [
    ["RELAY_MESH_PREFIX", "channel_prefix"],
    ["RELAY_MESH_INSTANCE_ID", "instance_id"],
    ["RELAY_MESH_KV_PATH", "kv_path"],
    ["RELAY_MESH_REDIS_URL", "redis_url"],
  ];
  for (const [v, k] of names) if (env[v] !== undefined) table[k] = env[v];
  const poll = env["RELAY_MESH_KV_POLL_MS"];
  if (poll !== undefined) {
    if (!/^\d{1,5}$/.test(poll)) {
      throw new ConfigError("RELAY_MESH_KV_POLL_MS", `expected a number of ms, got "${poll}"`);
    }
    table["kv_poll_ms"] = Number(poll);
  }
  const byKey = new Map(names.map(([v, k]) => [`mesh.${k}`, v]));
  byKey.set("mesh.kv_poll_ms", "RELAY_MESH_KV_POLL_MS");
  try {
    return readMesh(new Reader({ mesh: table }, ""), [], {});
  } catch (e) {
    // Name the variable the operator set, not the table key it stands for.
    if (e instanceof ConfigError) throw new ConfigError(byKey.get(e.key) ?? e.key, e.problem);
    throw e;
  }
}

/** Builds the default relay URL from the relay's own listener and public name. */
export function deriveRelayUrl(tls: TlsConfig | undefined, httpBindAddr: BindAddr, hostname: string): string {
  const useTls = tls !== undefined && !tls.dangerousHttpOnly;
  const addr = useTls ? tls!.httpsBindAddr : httpBindAddr;
  const wildcard = addr.hostname === "::" || addr.hostname === "0.0.0.0";
  let host = tls?.hostnames[0] ?? (wildcard ? hostname : addr.hostname);
  if (host.includes(":")) host = `[${host}]`;
  const scheme = useTls ? "https" : "http";
  const defaultPort = useTls ? 443 : 80;
  return `${scheme}://${host}${addr.port === defaultPort ? "" : `:${addr.port}`}/`;
}

function readImap(
  r: Reader,
  readers: Reader[],
  ctx: { tls: TlsConfig | undefined; httpBindAddr: BindAddr; hostname: string },
): ImapConfig | undefined {
  const i = r.table("imap");
  if (!i) return undefined;
  readers.push(i);
  const mode = i.oneOf("mode", ["standalone", "proxy"] as const, "standalone");
  let bindAddr = i.addr("bind_addr");
  const tlsBindAddr = i.addr("tls_bind_addr");
  const certPath = i.str("cert_path") ?? ctx.tls?.certPath;
  const keyPath = i.str("key_path") ?? ctx.tls?.keyPath;
  if (tlsBindAddr && (!certPath || !keyPath)) {
    throw new ConfigError("imap.tls_bind_addr", "needs imap.cert_path and imap.key_path, or a [tls] section");
  }
  if (!bindAddr && !tlsBindAddr) bindAddr = { hostname: "::", port: 143 };

  const configuredUrl = i.str("iroh_relay_url");
  let irohRelayUrl: string;
  if (configuredUrl !== undefined) {
    let u: URL;
    try {
      u = new URL(configuredUrl);
    } catch {
      throw new ConfigError("imap.iroh_relay_url", `"${configuredUrl}" is not a URL`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new ConfigError("imap.iroh_relay_url", `must start with http:// or https://, got "${configuredUrl}"`);
    }
    irohRelayUrl = configuredUrl;
  } else {
    irohRelayUrl = deriveRelayUrl(ctx.tls, ctx.httpBindAddr, ctx.hostname);
  }
  // deno-lint-ignore no-control-regex -- control characters are exactly what is refused here
  if (/[\x00-\x1f\x7f"\\]/.test(irohRelayUrl)) {
    throw new ConfigError("imap.iroh_relay_url", "must not contain control characters, quotes or backslashes");
  }

  const entries = new Map<string, string>();
  entries.set("/shared/vendor/deltachat/irohrelay", irohRelayUrl);
  const comment = i.str("comment");
  if (comment !== undefined) entries.set("/shared/comment", comment);
  const admin = i.str("admin");
  if (admin !== undefined) entries.set("/shared/admin", admin);
  const md = i.table("metadata");
  if (md) {
    for (const [name, value] of Object.entries(md.table_)) {
      md.raw(name);
      const key = `imap.metadata."${name}"`;
      if (!ENTRY_NAME.test(name) || name.includes("//") || /[*%]/.test(name)) {
        throw new ConfigError(key, "entry names must look like /shared/vendor/<vendor>/<name> (ASCII, no * or %)");
      }
      if (typeof value !== "string") throw new ConfigError(key, `expected a string value, got ${show(value)}`);
      const lower = name.toLowerCase();
      if (lower === "/shared/vendor/deltachat/irohrelay") {
        throw new ConfigError(key, "set the relay URL with imap.iroh_relay_url");
      }
      entries.set(lower, value);
    }
  }

  const users = new Map<string, string>();
  const u = i.table("users");
  if (u) {
    for (const [name, hash] of Object.entries(u.table_)) {
      u.raw(name);
      if (typeof hash !== "string" || !PASSWORD_HASH.test(hash)) {
        throw new ConfigError(
          `imap.users."${name}"`,
          `expected a password hash "pbkdf2-sha256$<iterations>$<salt>$<hash>" (make one with: npx deno task start hash-password, in a clone; or: iroh-relay-deno hash-password)`,
        );
      }
      users.set(name, hash);
    }
  }
  const defaultLogin = mode === "proxy" ? "upstream" : users.size > 0 ? "users" : "any";
  const login = i.oneOf("login", ["any", "users", "upstream"] as const, defaultLogin);
  if (login === "users" && users.size === 0) {
    throw new ConfigError("imap.login", `"users" needs at least one entry in [imap.users]`);
  }
  if (login === "upstream" && mode !== "proxy") {
    throw new ConfigError("imap.login", `"upstream" only works with mode = "proxy"`);
  }
  // The proxy relays LOGIN/AUTHENTICATE to the upstream untouched, so the upstream decides;
  // a second, local check would need credentials of its own.
  if (mode === "proxy" && login !== "upstream") {
    throw new ConfigError(
      "imap.login",
      `mode = "proxy" logs users in at the upstream: use "upstream" (the default), got "${login}"`,
    );
  }

  let upstream: ImapUpstream | undefined;
  const up = i.table("upstream");
  if (up) {
    readers.push(up);
    const host = up.str("host");
    if (!host) throw new ConfigError("imap.upstream.host", "is required");
    const useTls = up.bool("tls", true);
    const port = up.int("port", { min: 1, max: 65535 }) ?? (useTls ? 993 : 143);
    const caFile = up.str("ca_file");
    const serverName = up.str("server_name");
    upstream = {
      host,
      port,
      tls: useTls,
      verifyCertificate: up.bool("verify_certificate", true),
      ...(caFile !== undefined ? { caFile } : {}),
      ...(serverName !== undefined ? { serverName } : {}),
    };
  }
  if (mode === "proxy" && !upstream) throw new ConfigError("imap.upstream", `is required when imap.mode = "proxy"`);

  const limits: ImapLimits = {
    maxSessions: 1000,
    maxSessionsPerSource: 32,
    sourceConnectsPerSec: 8,
    sourceConnectsBurst: 32,
    maxLineBytes: 64 * 1024,
    maxLiteralBytes: 64 * 1024,
    maxProxyLiteralBytes: 64 * 1024 * 1024,
    idleTimeoutMs: 30 * 60_000,
    // Upstream servers give clients that have not logged in 30 s or less; idle pre-login sessions are cheap to open.
    loginTimeoutMs: 30_000,
    failedLoginDelayMs: 2_000,
    maxPendingReplyBytes: 1024 * 1024,
    passwordCheckConcurrency: 2,
    maxPendingPasswordChecks: 64,
  };
  const l = i.table("limits");
  if (l) {
    readers.push(l);
    limits.maxSessions = l.int("max_sessions", { min: 1 }) ?? limits.maxSessions;
    limits.maxSessionsPerSource = l.int("max_sessions_per_source", { min: 1 }) ?? limits.maxSessionsPerSource;
    limits.sourceConnectsPerSec = l.num("source_connects_per_sec", { min: 0 }) ?? limits.sourceConnectsPerSec;
    limits.sourceConnectsBurst = l.int("source_connects_burst", { min: 1 }) ?? limits.sourceConnectsBurst;
    limits.maxLineBytes = l.int("max_line_bytes", { min: 1024 }) ?? limits.maxLineBytes;
    limits.maxLiteralBytes = l.int("max_literal_bytes", { min: 1024 }) ?? limits.maxLiteralBytes;
    limits.maxProxyLiteralBytes = l.int("max_proxy_literal_bytes", { min: 1024 }) ?? limits.maxProxyLiteralBytes;
    const idle = l.num("idle_timeout_secs", { min: 0.05 });
    if (idle !== undefined) limits.idleTimeoutMs = idle * 1000;
    const login = l.num("login_timeout_secs", { min: 0.05 });
    if (login !== undefined) limits.loginTimeoutMs = login * 1000;
    const delay = l.num("failed_login_delay_secs", { min: 0 });
    if (delay !== undefined) limits.failedLoginDelayMs = delay * 1000;
    limits.maxPendingReplyBytes = l.int("max_pending_reply_bytes", { min: 4096 }) ?? limits.maxPendingReplyBytes;
    limits.passwordCheckConcurrency = l.int("password_check_concurrency", { min: 1, max: 64 }) ??
      limits.passwordCheckConcurrency;
    limits.maxPendingPasswordChecks = l.int("max_pending_password_checks", { min: 1 }) ??
      limits.maxPendingPasswordChecks;
  }

  return {
    ...(bindAddr ? { bindAddr } : {}),
    ...(tlsBindAddr ? { tlsBindAddr } : {}),
    ...(certPath ? { certPath } : {}),
    ...(keyPath ? { keyPath } : {}),
    mode,
    irohRelayUrl,
    irohRelayUrlDerived: configuredUrl === undefined,
    entries,
    login,
    users,
    ...(upstream ? { upstream } : {}),
    limits,
  };
}
