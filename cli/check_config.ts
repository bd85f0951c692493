/**
 * @module
 * `check-config`: after the schema, every file the config names is checked
 * ({@link checkConfigFiles}), and the report says what would run: each
 * listener with the key that sets it, and the relay URL clients will be
 * told (warning when its host has no domain).
 */

import {
  checkConfigFiles,
  clientRelayUrl,
  type Config,
  ConfigError,
  effectiveListeners,
  formatBindAddr,
  shortHostWarning,
} from "../config/mod.ts";

/** What check-config found beyond the schema. */
export interface CheckReport {
  /** Lines for stdout: listeners and the client URL. */
  lines: string[];
  /** Warnings (files, short host name). */
  warnings: string[];
  /** Bad files, each naming its key. */
  errors: ConfigError[];
}

/**
 * Checks the files `config` names and describes what it would run.
 * @param hostname this machine's name (for a derived URL)
 */
export async function checkConfig(config: Config, hostname: string): Promise<CheckReport> {
  const { warnings, errors } = await checkConfigFiles(config);
  const lines: string[] = [];
  const listeners = effectiveListeners(config);
  if (listeners.length === 0) lines.push("listeners: none");
  else lines.push("listeners:");
  const width = Math.max(0, ...listeners.map((l) => l.name.length));
  for (const l of listeners) {
    lines.push(`  ${l.name.padEnd(width)}  ${l.scheme}://${formatBindAddr(l.addr)}  (${l.key})`);
  }
  const told = clientRelayUrl(config, hostname);
  if (told) {
    lines.push(`${told.advertised ? "clients are told" : "relay URL for clients"}: ${told.url}  (${told.source})`);
    // Only a URL this service hands out is worth a warning; otherwise the operator types it in somewhere.
    const short = told.advertised ? shortHostWarning(told.url) : undefined;
    if (short) warnings.push(short);
  }
  return { lines, warnings, errors };
}
