/**
 * @module
 * Loading the TOML config: read the file, parse it (smol-toml, through the
 * import map so one line swaps the parser), validate with
 * {@link validateConfig}. Problems become one {@link ConfigError} line.
 *
 * @example
 * ```ts
 * import { configFromText } from "./mod.ts";
 * const { config } = configFromText('http_bind_addr = "127.0.0.1:3340"', "inline");
 * if (config.httpBindAddr.port !== 3340) throw new Error("bad port");
 * ```
 */

import { parse } from "smol-toml";
import { type Config, ConfigError, type SchemaEnv, validateConfig } from "./schema.ts";

export * from "./schema.ts";
export * from "./discovery.ts";
export { parseKeyText } from "./key_text.ts";

/**
 * Parses and validates TOML text.
 *
 * @param text TOML source
 * @param source file name for messages
 * @param env environment, `--dev`, host name
 * @throws {ConfigError}
 */
export function configFromText(
  text: string,
  source: string,
  env: SchemaEnv = {},
): { config: Config; warnings: string[] } {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (e) {
    const msg = (e as Error).message.split("\n")[0] ?? "invalid TOML";
    throw new ConfigError(source, `invalid TOML: ${msg}`);
  }
  try {
    return validateConfig(doc, env);
  } catch (e) {
    // Name the file too: an operator may have several configs.
    if (e instanceof ConfigError) throw new ConfigError(e.key, e.problem, source);
    throw e;
  }
}

/**
 * Reads, parses and validates a config file.
 * @throws {ConfigError} unreadable file or invalid content
 */
export async function loadConfig(path: string, env: SchemaEnv = {}): Promise<{ config: Config; warnings: string[] }> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(path, `cannot read config file: ${(e as Error).message}`);
  }
  return configFromText(text, path, env);
}
