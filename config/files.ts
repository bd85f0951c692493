/**
 * @module
 * Checks every file and directory a validated config names, before
 * anything starts: certificates and keys are read and parsed (and the key
 * must match the certificate), CA files parse, data locations can be
 * created. Each problem names the config key, so "No such file or
 * directory" never comes without the key that points there.
 *
 * Not pure (it reads files); `schema.ts` stays pure. A service that adds a
 * path key adds one entry to {@link namedPaths}.
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { type Config, ConfigError } from "./schema.ts";

/** What a named path must be. */
export type PathKind =
  | "certificate" // PEM certificate chain
  | "private-key" // PEM private key
  | "ca" // PEM CA certificate(s)
  | "data-file" // a file the service creates or opens: its directory must exist and be writable
  | "data-dir"; // a directory the service creates if needed

/** One path from the config. */
export interface NamedPath {
  /** Config key, for messages. */
  key: string;
  /** The path. */
  path: string;
  /** What it must be. */
  kind: PathKind;
  /** For a key: the certificate it must match. */
  pairedWith?: string;
}

/** Every path `config` will use, with the key that names it. */
function namedPaths(config: Config): NamedPath[] {
  const out: NamedPath[] = [];
  const tls = config.tls;
  const relayTls = config.enableRelay && tls !== undefined && !tls.dangerousHttpOnly;
  // Files the operator provides; with ACME (LetsEncrypt) the service writes them into cert_dir itself.
  const manual = tls?.certMode === "Manual" || tls?.certMode === "Reloading";
  if (relayTls && manual) {
    out.push({ key: "tls.manual_cert_path", path: tls.certPath, kind: "certificate" });
    out.push({ key: "tls.manual_key_path", path: tls.keyPath, kind: "private-key", pairedWith: tls.certPath });
  } else if (relayTls && tls.acme) {
    out.push({ key: "tls.cert_dir", path: tls.acme.certDir, kind: "data-dir" });
  }
  const imap = config.imap;
  if (imap?.tlsBindAddr && imap.certPath && imap.keyPath) {
    // Inherited from [tls] unless set: name the key the operator would edit.
    const inherited = tls !== undefined && imap.certPath === tls.certPath && imap.keyPath === tls.keyPath;
    if (!inherited || (manual && !relayTls)) {
      const [c, k] = inherited ? ["tls.manual_cert_path", "tls.manual_key_path"] : ["imap.cert_path", "imap.key_path"];
      out.push({ key: c, path: imap.certPath, kind: "certificate" });
      out.push({ key: k, path: imap.keyPath, kind: "private-key", pairedWith: imap.certPath });
    }
  }
  if (imap?.upstream?.caFile) out.push({ key: "imap.upstream.ca_file", path: imap.upstream.caFile, kind: "ca" });
  if (config.discovery?.store.kind === "sqlite") {
    out.push({ key: "discovery.data_dir", path: config.discovery.store.dataDir, kind: "data-dir" });
  }
  if (config.mailbox?.store === "sqlite") {
    out.push({ key: "mailbox.data_dir", path: config.mailbox.dataDir, kind: "data-dir" });
  }
  if (config.mesh?.backend === "kv" && config.mesh.kvPath) {
    out.push({ key: "mesh.kv_path", path: config.mesh.kvPath, kind: "data-file" });
  }
  return out;
}

function dirname(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

async function readText(p: NamedPath): Promise<string> {
  try {
    return await Deno.readTextFile(p.path);
  } catch (e) {
    throw new ConfigError(p.key, `cannot read "${p.path}": ${(e as Error).message}`);
  }
}

/** Whether `dir` is a directory we can create files in (tries one temporary file). */
async function writableDir(dir: string): Promise<string | undefined> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    return (e as Error).message;
  }
  if (!info.isDirectory) return "not a directory";
  try {
    await Deno.remove(await Deno.makeTempFile({ dir, prefix: ".iroh-relay-check-" }));
    return undefined;
  } catch (e) {
    // Run without --allow-write (the start task, the compiled binary): the directory exists, which is all we can see.
    if (e instanceof Deno.errors.NotCapable) return undefined;
    return `cannot create files there: ${(e as Error).message}`;
  }
}

/** Nearest existing ancestor of `path` (a directory to be created must start there). */
async function existingAncestor(path: string): Promise<string> {
  let p = path;
  for (let i = 0; i < 256; i++) {
    try {
      await Deno.stat(p);
      return p;
    } catch {
      const parent = dirname(p);
      if (parent === p) return p;
      p = parent;
    }
  }
  return p;
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Checks one path (exported for tests; {@link checkConfigFiles} is the entry).
 * @throws {ConfigError} naming `p.key`
 */
export async function checkNamedPath(p: NamedPath, warnings: string[], now: Date): Promise<void> {
  switch (p.kind) {
    case "certificate":
    case "ca": {
      const text = await readText(p);
      const blocks = text.match(CERT_BLOCK) ?? [];
      if (blocks.length === 0) {
        throw new ConfigError(p.key, `"${p.path}" holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
      }
      blocks.forEach((block, i) => {
        let cert: X509Certificate;
        try {
          cert = new X509Certificate(block);
        } catch (e) {
          throw new ConfigError(p.key, `"${p.path}": certificate ${i + 1} does not parse: ${(e as Error).message}`);
        }
        if (i > 0 || p.kind === "ca") return;
        const until = new Date(cert.validTo);
        const days = Math.floor((until.getTime() - now.getTime()) / 86_400_000);
        if (until < now) warnings.push(`${p.key}: "${p.path}" expired on ${until.toISOString()}`);
        else if (days < 14) warnings.push(`${p.key}: "${p.path}" expires in ${days} day(s), ${until.toISOString()}`);
      });
      return;
    }
    case "private-key": {
      const text = await readText(p);
      let key;
      try {
        key = createPrivateKey(text);
      } catch (e) {
        throw new ConfigError(p.key, `"${p.path}" is not a PEM private key: ${(e as Error).message}`);
      }
      if (p.pairedWith === undefined) return;
      let cert: X509Certificate;
      try {
        cert = new X509Certificate((await Deno.readTextFile(p.pairedWith)).match(CERT_BLOCK)?.[0] ?? "");
      } catch {
        return; // the certificate's own check reports it
      }
      if (!cert.checkPrivateKey(key)) {
        throw new ConfigError(p.key, `"${p.path}" is not the key of the certificate "${p.pairedWith}"`);
      }
      return;
    }
    case "data-file": {
      const problem = await writableDir(dirname(p.path));
      if (problem) throw new ConfigError(p.key, `the directory of "${p.path}" is not usable: ${problem}`);
      return;
    }
    case "data-dir": {
      const start = await existingAncestor(p.path);
      const problem = await writableDir(start);
      if (problem) {
        throw new ConfigError(p.key, `"${p.path}" cannot be created (checked "${start}"): ${problem}`);
      }
      return;
    }
  }
}

/**
 * Checks every path `config` names. Needs read access to them (and write
 * access to data directories, where it creates and removes one file).
 *
 * @returns warnings (a certificate expiring within 14 days) and errors, one per bad path
 */
export async function checkConfigFiles(
  config: Config,
  now: Date = new Date(),
): Promise<{ warnings: string[]; errors: ConfigError[] }> {
  const warnings: string[] = [];
  const errors: ConfigError[] = [];
  for (const p of namedPaths(config)) {
    try {
      await checkNamedPath(p, warnings, now);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      errors.push(e);
    }
  }
  return { warnings, errors };
}
