/**
 * @module
 * What `check-config` verifies about a LetsEncrypt `[tls]` table beyond its
 * syntax: the files it names are usable on this machine. Nothing is created
 * or changed.
 */

import type { AcmeConfig } from "../config/mod.ts";
import { acmePaths } from "./store.ts";

/** One problem, with the config key it belongs to. */
export interface AcmeProblem {
  /** Dotted key, e.g. `tls.acme_ca_file`. */
  key: string;
  /** What is wrong. */
  problem: string;
}

/** Reads `acme_ca_file` and checks it holds at least one PEM certificate. */
export async function readAcmeCa(path: string): Promise<string> {
  let ca: string;
  try {
    ca = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`tls.acme_ca_file ${path}: ${(e as Error).message}`);
  }
  if (!ca.includes("-----BEGIN CERTIFICATE-----")) {
    throw new Error(`tls.acme_ca_file ${path}: no PEM certificate in it`);
  }
  return ca;
}

/**
 * Checks `acme_ca_file` is a readable PEM certificate and `cert_dir` is a
 * writable directory (or can be created: its parent exists).
 */
export async function checkAcmeSetup(cfg: AcmeConfig): Promise<AcmeProblem[]> {
  const problems: AcmeProblem[] = [];
  if (cfg.caFile !== undefined) {
    try {
      await readAcmeCa(cfg.caFile);
    } catch (e) {
      problems.push({ key: "tls.acme_ca_file", problem: (e as Error).message.replace(/^tls\.acme_ca_file /, "") });
    }
  }
  const dir = acmePaths(cfg.certDir).dir;
  try {
    const st = await Deno.stat(dir);
    if (!st.isDirectory) {
      problems.push({ key: "tls.cert_dir", problem: `${dir} is not a directory` });
    } else {
      const probe = await Deno.makeTempFile({ dir, prefix: ".write-test-" });
      await Deno.remove(probe);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      const parent = dir.includes("/") ? dir.slice(0, dir.lastIndexOf("/")) || "/" : ".";
      const ok = await Deno.stat(parent).then((s) => s.isDirectory, () => false);
      if (!ok) problems.push({ key: "tls.cert_dir", problem: `${dir} does not exist and neither does ${parent}` });
    } else {
      problems.push({ key: "tls.cert_dir", problem: `${dir} is not writable: ${(e as Error).message}` });
    }
  }
  return problems;
}
