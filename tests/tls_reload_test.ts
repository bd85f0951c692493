/**
 * Certificate renewal as an operator does it: replace the PEM files, send
 * SIGHUP (`systemctl reload`). New connections get the new certificate, the
 * connections already open stay up, and a broken file is refused without
 * taking HTTPS down.
 */

import assert from "node:assert/strict";
import { connectClient, type TestRelayClient } from "./support/relay_client.ts";
import { withTimeout } from "./support/relay_scope.ts";
import { MainProcess } from "./support/main_process.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
/** Certificate A: self-signed `localhost`. */
const A = { cert: `${FIXTURES}localhost.crt`, key: `${FIXTURES}localhost.key`, ca: `${FIXTURES}localhost.crt` };
/** Certificate B: a leaf for `localhost` from the test CA. */
const B = {
  cert: `${FIXTURES}imap_tls/cert.pem`,
  key: `${FIXTURES}imap_tls/key.pem`,
  ca: `${FIXTURES}imap_tls/ca.pem`,
};

async function tlsClient(port: number, caFile: string): Promise<TestRelayClient> {
  return await connectClient(port, "v2", { tlsHostname: "localhost", caCerts: [await Deno.readTextFile(caFile)] });
}

Deno.test("SIGHUP re-reads the TLS certificate: new connections get it, open ones stay up", async () => {
  const dir = await Deno.makeTempDir();
  const cert = `${dir}/fullchain.pem`;
  const key = `${dir}/privkey.pem`;
  await Deno.copyFile(A.cert, cert);
  await Deno.copyFile(A.key, key);
  await Deno.writeTextFile(
    `${dir}/relay.toml`,
    `http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\nenable_stun = false\n[tls]\ncert_mode = "Manual"\n` +
      `https_bind_addr = "127.0.0.1:0"\nmanual_cert_path = "${cert}"\nmanual_key_path = "${key}"\n`,
  );
  const main = new MainProcess(["--config", `${dir}/relay.toml`]);
  const open: TestRelayClient[] = [];
  try {
    const port = Number((await main.waitFor(/relay listening on https:\/\/127\.0\.0\.1:(\d+)/))[1]);
    await main.waitFor(/running/);
    const before = await tlsClient(port, A.ca);
    open.push(before);
    await before.ping();

    // Renewal: new files, then SIGHUP.
    await Deno.copyFile(B.cert, cert);
    await Deno.copyFile(B.key, key);
    let mark = main.log.length;
    main.child.kill("SIGHUP");
    await main.waitFor(/TLS certificate reloaded/, mark);

    const after = await tlsClient(port, B.ca);
    open.push(after);
    await after.ping();
    await assert.rejects(tlsClient(port, A.ca), "the old certificate is no longer served");
    // The connection made before the reload is still up and can reach the new one.
    await before.ping();
    await before.send(after.publicKey, new TextEncoder().encode("still here"));
    assert.equal(new TextDecoder().decode((await after.recv()).data), "still here");

    // A broken file is refused: the error is logged and HTTPS keeps serving certificate B.
    await Deno.writeTextFile(cert, "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n");
    mark = main.log.length;
    main.child.kill("SIGHUP");
    await main.waitFor(/TLS reload failed, keeping the old certificate/, mark);
    const still = await tlsClient(port, B.ca);
    open.push(still);
    await still.ping();
    await before.ping();
  } finally {
    for (const c of open) c.close();
    await main.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGHUP re-reads access control: a newly denied key is disconnected and refused, others stay", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/relay.toml`;
  await Deno.writeTextFile(path, 'http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\nenable_stun = false\n');
  const main = new MainProcess(["--config", path]);
  const open: TestRelayClient[] = [];
  try {
    const port = Number((await main.waitFor(/relay listening on http:\/\/127\.0\.0\.1:(\d+)/))[1]);
    await main.waitFor(/running/);
    const victim = await connectClient(port, "derp");
    const bystander = await connectClient(port, "v2");
    open.push(victim, bystander);
    await victim.ping();
    await bystander.ping();

    const hex = [...victim.publicKey].map((b) => b.toString(16).padStart(2, "0")).join("");
    await Deno.writeTextFile(
      path,
      `http_bind_addr = "127.0.0.1:0"\nenable_metrics = false\nenable_stun = false\naccess.denylist = ["${hex}"]\n`,
    );
    let mark = main.log.length;
    main.child.kill("SIGHUP");
    await main.waitFor(/access control reloaded \(denylist\); 1 connection\(s\)/, mark);
    await withTimeout(victim.ended, 5000, "the denied client to be disconnected");
    await bystander.ping();
    const again = await connectClient(port, "derp", { secretKey: victim.secretKey });
    open.push(again);
    const health = await again.nextOf("Health");
    assert.equal(health.problem, "not authenticated");

    // A config that no longer validates changes nothing.
    await Deno.writeTextFile(path, 'http_bind_addr = "nonsense"\n');
    mark = main.log.length;
    main.child.kill("SIGHUP");
    await main.waitFor(/config reload failed, keeping the running configuration/, mark);
    await bystander.ping();
  } finally {
    for (const c of open) c.close();
    await main.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
