/**
 * @module
 * What `main.ts` runs besides flag parsing and signals: the `check-config`
 * report, the password prompt of `hash-password`, naming the listener behind
 * an address-in-use error, the build's version and revision, and the
 * assembly of the services a config enables ({@link startServices}), and
 * giving memory freed after a burst back to the system ({@link startMallocTrim}).
 */

export { checkConfig, type CheckReport } from "./check_config.ts";
export { explainListenError } from "./listen_error.ts";
export { PasswordAborted, readPassword } from "./password_prompt.ts";
export { GIT_HASH, VERSION } from "./build_info.ts";
export { type Services, type ServiceTuning, startServices } from "./services.ts";
export { MALLOC_TRIM_INTERVAL_MS, type MallocTrim, startMallocTrim } from "./malloc_trim.ts";
