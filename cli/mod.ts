/**
 * @module
 * Command-line helpers of `main.ts` that are more than flag parsing: the
 * `check-config` report, the password prompt of `hash-password`, and naming
 * the listener behind an address-in-use error.
 */

export { checkConfig, type CheckReport } from "./check_config.ts";
export { explainListenError } from "./listen_error.ts";
export { PasswordAborted, readPassword } from "./password_prompt.ts";
