/**
 * @module
 * The TOML reading and strictness machinery every section file uses: the
 * typed {@link Reader} (which remembers every key name it is asked about:
 * those are a table's known keys), {@link ConfigError}, bind addresses, and
 * the unknown-key search with its did-you-mean suggestion. Pure, like the
 * rest of `config/`.
 */

import { closestKey } from "./suggest.ts";

/** A `host:port` listen address. */
export interface BindAddr {
  /** IP literal or host name, without brackets. */
  hostname: string;
  /** TCP/UDP port; 0 picks a free one. */
  port: number;
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

/** A parsed TOML table. */
export type Table = Record<string, unknown>;

/** True for a TOML table (not a list, date or scalar). */
export function isTable(v: unknown): v is Table {
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

/** A value as shown in a message: strings quoted, lists and tables named. */
export function show(v: unknown): string {
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

/** An unknown key, with the known key it probably meant. */
export interface UnknownKey {
  /** Dotted path as written. */
  key: string;
  /** Closest known key (dotted path), if any is close. */
  suggestion?: string;
  /** The suggestion is a near-miss in the same table (not the same name in another one). */
  typo?: true;
}

/** The unknown keys of every table read, each with its closest known key if one is close. */
export function unknownKeys(readers: readonly Reader[]): UnknownKey[] {
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

/** ` (did you mean `x`?)` when there is a suggestion, else nothing. */
export function didYouMean(u: UnknownKey): string {
  return u.suggestion === undefined ? "" : ` (did you mean \`${u.suggestion}\`?)`;
}
