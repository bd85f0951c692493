/**
 * @module
 * Loading the TOML config: read the file, parse it (smol-toml, through the
 * import map so one line swaps the parser), validate with
 * {@link validateConfig}. Problems become one {@link ConfigError} line; a
 * TOML syntax error also shows the offending line with a caret under the
 * column.
 *
 * @example
 * ```ts
 * import { configFromText } from "./mod.ts";
 * const { config } = configFromText('http_bind_addr = "127.0.0.1:3340"', "inline");
 * if (config.httpBindAddr.port !== 3340) throw new Error("bad port");
 * ```
 */

import { parse, TomlError } from "smol-toml";
import { type Config, ConfigError, type SchemaEnv, validateConfig } from "./schema.ts";

export * from "./schema.ts";
export * from "./discovery.ts";
export { checkConfigFiles } from "./files.ts";
export { clientRelayUrl, type EffectiveListener, effectiveListeners, shortHostWarning } from "./listeners.ts";
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
    throw tomlError(e, text, source);
  }
  try {
    return validateConfig(doc, env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // Name the file too: an operator may have several configs.
    const named = new ConfigError(e.key, e.problem, source);
    named.warnings = e.warnings;
    throw named;
  }
}

/** Shows a control character as `\xNN`, so a bad byte cannot mangle the terminal. */
function printable(line: string): string {
  // deno-lint-ignore no-control-regex -- control characters are exactly what is replaced here
  return line.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/**
 * `file:LINE:COLUMN: invalid TOML: <reason>`, then the line and a caret under the column.
 * The parser's message repeats its own excerpt after a blank line; only the reason is kept.
 */
function tomlError(e: unknown, text: string, source: string): ConfigError {
  const reason = ((e as Error).message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "") ||
    "syntax error";
  if (!(e instanceof TomlError) || !(e.line >= 1)) return new ConfigError(source, `invalid TOML: ${reason}`);
  const line = printable(text.split(/\r?\n/)[e.line - 1] ?? "");
  const gutter = `${e.line} | `;
  const caret = " ".repeat(gutter.length - 2) + "| " + " ".repeat(Math.max(0, e.column - 1)) + "^";
  return new ConfigError(`${source}:${e.line}:${e.column}`, `invalid TOML: ${reason}\n  ${gutter}${line}\n  ${caret}`);
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
