import assert from "node:assert/strict";
import { createLogger } from "../log/mod.ts";
import { AcmeManager } from "./manager.ts";
import { acmePaths, certificateInfo, PLACEHOLDER_NAME, placeholderCertificate, writeCertificate } from "./store.ts";

const cfg = (certDir: string) => ({
  hostnames: ["relay.example.org"],
  contact: "ops@example.org",
  directoryUrl: "https://127.0.0.1:1/dir",
  certDir,
});

function capture(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ write: (l) => lines.push(l) }) };
}

Deno.test("AcmeManager.prepare() writes a placeholder (0600, in a 0700 dir) when nothing is cached", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { lines, logger } = capture();
    const m = await AcmeManager.prepare(cfg(`${dir}/certs`), { log: logger });
    const p = acmePaths(`${dir}/certs`);
    assert.deepEqual(certificateInfo(await Deno.readTextFile(p.cert)).domains, [PLACEHOLDER_NAME]);
    for (const f of [p.cert, p.key]) assert.equal((await Deno.stat(f)).mode! & 0o777, 0o600, f);
    assert.equal((await Deno.stat(p.dir)).mode! & 0o777, 0o700);
    assert.equal(m.status().certificate, "placeholder");
    assert.ok(lines.some((l) => /no certificate for relay\.example\.org yet/.test(l)), lines.join("\n"));
    m.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AcmeManager.prepare() replaces a chain and key that do not belong together, so TLS can start", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = acmePaths(dir);
    const [a, b] = [await placeholderCertificate(), await placeholderCertificate()];
    await writeCertificate(p, { cert: a.cert, key: b.key });
    const { lines, logger } = capture();
    const m = await AcmeManager.prepare(cfg(dir), { log: logger });
    assert.ok(lines.some((l) => /do not form a usable pair; replacing them/.test(l)), lines.join("\n"));
    const pem = { cert: await Deno.readTextFile(p.cert), key: await Deno.readTextFile(p.key) };
    Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...pem }).close();
    m.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AcmeManager.prepare() refuses an unreadable acme_ca_file with the key's name", async () => {
  await assert.rejects(
    AcmeManager.prepare({ ...cfg("/nonexistent"), caFile: "/nonexistent/ca.pem" }),
    /tls\.acme_ca_file \/nonexistent\/ca\.pem/,
  );
});
