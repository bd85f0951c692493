/**
 * @module
 * ACME certificates for `[tls] cert_mode = "LetsEncrypt"` (iroh-relay's
 * keys `hostname`, `contact`, `prod_tls`, `cert_dir`, plus our
 * `acme_directory_url` and `acme_ca_file`): obtained at start when none is
 * cached, renewed at 2/3 of their lifetime, validated over HTTP-01 on the
 * relay's plain HTTP port, swapped into every TLS listener through the
 * reload function main.ts passes in.
 *
 * @example
 * ```ts ignore
 * const acme = await AcmeManager.prepare(config.tls.acme, { log });
 * const relay = await startRelay(config, { routes: [acme.route] });
 * acme.start(() => relay.reloadTls());
 * ```
 */

export { AcmeManager, type AcmeOptions, type AcmeStatus } from "./manager.ts";
export { CHALLENGE_PREFIX, Http01Challenges } from "./http01.ts";
export { type AcmeProblem, checkAcmeSetup } from "./preflight.ts";
export {
  type Backoff,
  type CertificateInfo,
  DEFAULT_BACKOFF,
  describeAcmeError,
  renewalTime,
  retryDelay,
  unusableReason,
} from "./schedule.ts";
export { acmePaths, certificateInfo, PLACEHOLDER_NAME } from "./store.ts";
