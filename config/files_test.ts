/**
 * The file checks behind `check-config` on real files: an expiring
 * certificate is a warning, a data directory is creatable when its nearest
 * existing ancestor is a writable directory.
 */

import assert from "node:assert/strict";
import { checkNamedPath } from "./files.ts";
import { ConfigError } from "./schema.ts";

const FIXTURES = new URL("../tests/fixtures/", import.meta.url).pathname;

Deno.test("checkNamedPath() warns about a certificate that expires within 14 days or has expired", async () => {
  const cert = { key: "tls.manual_cert_path", path: `${FIXTURES}localhost.crt`, kind: "certificate" } as const;
  const quiet: string[] = [];
  await checkNamedPath(cert, quiet, new Date("2026-01-01T00:00:00Z"));
  assert.deepEqual(quiet, []);
  const soon: string[] = [];
  await checkNamedPath(cert, soon, new Date("2126-10-20T00:00:00Z"));
  assert.match(soon[0] ?? "", /^tls\.manual_cert_path: ".*localhost\.crt" expires in 9 day\(s\), 2126-10-29/);
  const late: string[] = [];
  await checkNamedPath(cert, late, new Date("2127-01-01T00:00:00Z"));
  assert.match(late[0] ?? "", /expired on 2126-10-29/);
});

Deno.test("checkNamedPath() accepts a data directory to be created under a writable one, and names the key otherwise", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await checkNamedPath({ key: "x.data_dir", path: `${dir}/a/b/c`, kind: "data-dir" }, [], new Date());
    assert.deepEqual([...Deno.readDirSync(dir)], [], "the check leaves nothing behind");
    await Deno.writeTextFile(`${dir}/file`, "");
    await assert.rejects(
      checkNamedPath({ key: "x.data_dir", path: `${dir}/file/sub`, kind: "data-dir" }, [], new Date()),
      (e: unknown) => e instanceof ConfigError && e.key === "x.data_dir" && /not a directory/.test(e.message),
    );
    await assert.rejects(
      checkNamedPath({ key: "mesh.kv_path", path: `${dir}/missing/kv.sqlite`, kind: "data-file" }, [], new Date()),
      (e: unknown) => e instanceof ConfigError && e.key === "mesh.kv_path",
    );
    await checkNamedPath({ key: "mesh.kv_path", path: `${dir}/kv.sqlite`, kind: "data-file" }, [], new Date());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
