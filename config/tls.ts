/**
 * @module
 * The `[tls]` table (upstream's `TlsConfig`: `cert_mode` Manual, Reloading or
 * LetsEncrypt; listener addresses; certificate paths) and the ACME keys that
 * apply with `cert_mode = "LetsEncrypt"` (`hostname`, `contact`, `prod_tls`,
 * `cert_dir`, ours: `acme_directory_url`, `acme_ca_file`). Pure.
 */

import { type BindAddr, ConfigError, type Reader } from "./reader.ts";

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

/**
 * Reads `[tls]`; undefined when the table is absent.
 * @param ctx the relay's top-level keys the ACME checks depend on, `--dev`, the environment
 */
export function readTls(
  r: Reader,
  readers: Reader[],
  warnings: string[],
  ctx: {
    enableRelay: boolean;
    httpBindAddr: BindAddr;
    dev: boolean | undefined;
    env: Record<string, string | undefined>;
  },
): TlsConfig | undefined {
  const { enableRelay, httpBindAddr, env } = ctx;
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
    const dangerousHttpOnly = t.bool("dangerous_http_only", false) || ctx.dev === true;
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
    return {
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
  return undefined;
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
