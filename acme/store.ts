/**
 * @module
 * The certificate directory (`[tls] cert_dir`): account key, certificate
 * chain and its key, each a PEM file with mode 0600, written to a
 * temporary name and renamed so a reader (a SIGHUP reload, the IMAPS
 * listener) never sees half a file. Also the self-signed placeholder that
 * lets every TLS listener start before the first certificate arrives.
 */

import * as x509 from "@peculiar/x509";
import acme from "acme-client";
import type { CertificateInfo } from "./schedule.ts";

/** Name of the placeholder certificate: never a hostname we serve, so never taken for a cached one. */
export const PLACEHOLDER_NAME = "acme-pending.iroh-relay-deno.invalid";

/** The files ACME keeps. */
export interface AcmePaths {
  /** Directory holding them. */
  dir: string;
  /** ACME account key (PEM). */
  accountKey: string;
  /** Certificate chain (PEM), what the TLS listeners serve. */
  cert: string;
  /** Its private key (PEM). */
  key: string;
}

/** File names inside `cert_dir`. */
export function acmePaths(certDir: string): AcmePaths {
  const dir = certDir.replace(/\/+$/, "") || "/";
  return {
    dir,
    accountKey: `${dir}/acme-account.key`,
    cert: `${dir}/acme-cert.pem`,
    key: `${dir}/acme-key.pem`,
  };
}

/** Writes `text` to `path` with mode 0600 atomically (temporary file, then rename). */
export async function writeSecret(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeTextFile(tmp, text, { mode: 0o600 });
    // `mode` applies only to new files; make sure of it either way.
    await Deno.chmod(tmp, 0o600);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Reads a file, or undefined if it does not exist. */
async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** What a certificate PEM says about itself (first certificate of the chain). */
export function certificateInfo(pem: string): CertificateInfo & { issuer: string } {
  const info = acme.crypto.readCertificateInfo(pem);
  const domains = new Set<string>(info.domains.altNames);
  if (info.domains.commonName) domains.add(info.domains.commonName);
  return {
    notBefore: new Date(info.notBefore),
    notAfter: new Date(info.notAfter),
    domains: [...domains],
    issuer: info.issuer.commonName ?? "",
  };
}

/** The certificate and key in `paths`, if both exist and parse. */
export async function readCertificate(
  paths: AcmePaths,
): Promise<{ cert: string; key: string; info: CertificateInfo & { issuer: string } } | undefined> {
  const [cert, key] = await Promise.all([readIfExists(paths.cert), readIfExists(paths.key)]);
  if (cert === undefined || key === undefined) return undefined;
  try {
    return { cert, key, info: certificateInfo(cert) };
  } catch {
    return undefined;
  }
}

/** True if Deno's TLS accepts `pem` as a chain and its key (what every TLS listener will be given). */
export function tlsPairLoads(pem: { cert: string; key: string }): boolean {
  try {
    Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: pem.cert, key: pem.key }).close();
    return true;
  } catch {
    return false;
  }
}

/** The account key, created (and saved, 0600) on first use. */
export async function accountKey(paths: AcmePaths): Promise<string> {
  const existing = await readIfExists(paths.accountKey);
  if (existing !== undefined) return existing;
  const key = (await acme.crypto.createPrivateEcdsaKey()).toString();
  await writeSecret(paths.accountKey, key);
  return key;
}

/** Creates `cert_dir` (0700) if missing. */
export async function ensureDir(paths: AcmePaths): Promise<void> {
  await Deno.mkdir(paths.dir, { recursive: true, mode: 0o700 });
}

/** Saves a certificate chain and its key. The key goes first: a reader never pairs a new chain with an old key. */
export async function writeCertificate(paths: AcmePaths, pem: { cert: string; key: string }): Promise<void> {
  await writeSecret(paths.key, pem.key);
  await writeSecret(paths.cert, pem.cert);
}

/**
 * A self-signed certificate for {@link PLACEHOLDER_NAME}, valid one day:
 * what HTTPS serves until the CA has issued the real one (clients refuse
 * it, as they would refuse a connection to a relay without a certificate).
 */
export async function placeholderCertificate(): Promise<{ cert: string; key: string }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0"))
      .join("").replace(/^[89a-f]/, "1"),
    name: `CN=${PLACEHOLDER_NAME}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: PLACEHOLDER_NAME }])],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { cert: cert.toString("pem"), key: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") };
}
