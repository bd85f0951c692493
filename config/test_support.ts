/**
 * @module
 * Helpers shared by the config tests (one test file per table, like the
 * source files): load TOML text as `test.toml`, and assert a
 * {@link ConfigError} naming a key.
 */

import assert from "node:assert/strict";
import { configFromText } from "./mod.ts";
import { type Config, ConfigError, type SchemaEnv } from "./schema.ts";

/** Parses and validates `text` as the file `test.toml`. */
export function load(text: string, env: SchemaEnv = {}): { config: Config; warnings: string[] } {
  return configFromText(text, "test.toml", env);
}

/** Asserts that `fn` throws a {@link ConfigError} for `key` (and matching `message`, if given). */
export function assertConfigError(fn: () => unknown, key: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    assert.equal(e.key, key);
    assert.ok(e.message.startsWith(`${key}: `) || e.message.startsWith(`test.toml: ${key}: `), e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}
