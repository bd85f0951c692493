/**
 * @module
 * Let's Encrypt's ACME test server, Debian's `pebble`, on loopback, for the
 * ACME tests. Debian ships it without its test certificates, so this makes
 * a small CA and a `127.0.0.1` certificate for pebble's own HTTPS, and a
 * tiny DNS server (npm `dns-packet`) that answers the test hostnames with
 * 127.0.0.1, which pebble's validation (`-dnsserver`) resolves through.
 * Validation is real: pebble fetches the HTTP-01 token from `httpPort`.
 */

import * as x509 from "@peculiar/x509";
// @ts-types="./dns_packet.d.ts"
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { ensureDebPackages, freePort } from "./mail_server.ts";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

async function keyPem(k: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", k), "PRIVATE KEY");
}

/** A CA and a leaf for 127.0.0.1 / localhost, for pebble's HTTPS listener. */
export async function makeTestCa(): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const caKeys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as CryptoKeyPair;
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=iroh-relay-deno test CA for pebble",
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const leafKeys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: "CN=localhost",
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "localhost" }, {
        type: "ip",
        value: "127.0.0.1",
      }]),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ],
  });
  return { caPem: ca.toString("pem"), certPem: leaf.toString("pem"), keyPem: await keyPem(leafKeys.privateKey) };
}

/** A UDP DNS server answering `names` with A 127.0.0.1 (and nothing else). */
export function startDnsStub(names: string[]): { port: number; queries: string[]; close(): Promise<void> } {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const wanted = new Set(names.map((n) => n.toLowerCase()));
  const queries: string[] = [];
  const loop = (async () => {
    for (;;) {
      let pkt: Uint8Array, from: Deno.Addr;
      try {
        [pkt, from] = await sock.receive();
      } catch {
        return;
      }
      let q;
      try {
        q = dnsPacket.decode(Buffer.from(pkt));
      } catch {
        continue;
      }
      const question = q.questions?.[0];
      if (!question) continue;
      const name = question.name.toLowerCase().replace(/\.$/, "");
      queries.push(`${question.type} ${name}`);
      const known = wanted.has(name);
      const answers = known && question.type === "A"
        ? [{ type: "A", name: question.name, ttl: 5, class: "IN", data: "127.0.0.1" }]
        : [];
      const reply = dnsPacket.encode({
        type: "response",
        id: q.id ?? 0,
        flags: dnsPacket.AUTHORITATIVE_ANSWER | (known ? 0 : 3), // rcode 3: NXDOMAIN
        questions: q.questions ?? [],
        answers,
      });
      await sock.send(new Uint8Array(reply), from).catch(() => {});
    }
  })();
  return {
    port: (sock.addr as Deno.NetAddr).port,
    queries,
    async close() {
      sock.close();
      await loop;
    },
  };
}

/** A running pebble. */
export interface Pebble {
  /** ACME directory URL. */
  directoryUrl: string;
  /** Port of the ACME listener. */
  port: number;
  /** PEM of the CA that signs pebble's HTTPS certificate (what `acme_ca_file` names). */
  caPem: string;
  /** The root that signs the certificates pebble issues (for clients of the relay). */
  issuerRoot(): Promise<string>;
  /** New orders pebble has received so far. */
  orders(): number;
  /** Everything pebble printed. */
  log(): string;
  /** Stops pebble (SIGTERM) and waits for it. */
  stop(): Promise<void>;
}

/** Options of {@link startPebble}. */
export interface PebbleOptions {
  /** Port the validation connects to for HTTP-01 (our relay's HTTP listener). */
  httpPort: number;
  /** DNS server pebble resolves names with. */
  dnsPort: number;
  /** Directory for config and certificates. */
  dir: string;
  /** ACME port (default: a free one). */
  port?: number;
  /** CA for pebble's HTTPS (default: a new one). */
  ca?: { caPem: string; certPem: string; keyPem: string };
}

/** Starts pebble and waits until its directory answers. */
export async function startPebble(opts: PebbleOptions): Promise<Pebble> {
  await ensureDebPackages(["pebble"]);
  const ca = opts.ca ?? await makeTestCa();
  const port = opts.port ?? freePort();
  const mgmt = freePort();
  await Deno.writeTextFile(`${opts.dir}/pebble-cert.pem`, ca.certPem);
  await Deno.writeTextFile(`${opts.dir}/pebble-key.pem`, ca.keyPem);
  await Deno.writeTextFile(
    `${opts.dir}/pebble.json`,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${mgmt}`,
        certificate: `${opts.dir}/pebble-cert.pem`,
        privateKey: `${opts.dir}/pebble-key.pem`,
        httpPort: opts.httpPort,
        tlsPort: freePort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  const child = new Deno.Command("pebble", {
    args: ["-config", `${opts.dir}/pebble.json`, "-dnsserver", `127.0.0.1:${opts.dnsPort}`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // No random validation delays, no injected bad nonces, no reused authorizations: every order validates.
    env: { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" },
  }).spawn();
  let text = "";
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) text += chunk;
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const client = Deno.createHttpClient({ caCerts: [ca.caPem] });
  const directoryUrl = `https://127.0.0.1:${port}/dir`;
  let up = false;
  for (let i = 0; i < 100 && !up; i++) {
    try {
      const res = await fetch(directoryUrl, { client });
      await res.body?.cancel();
      up = res.ok;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // exited
    }
    await child.status;
    await pumps;
    client.close();
  };
  if (!up) {
    await stop();
    throw new Error(`pebble did not start:\n${text.slice(-2000)}`);
  }
  return {
    directoryUrl,
    port,
    caPem: ca.caPem,
    async issuerRoot() {
      const res = await fetch(`https://127.0.0.1:${mgmt}/roots/0`, { client });
      return await res.text();
    },
    orders: () => text.split("\n").filter((l) => /POST \/order-plz/.test(l)).length,
    log: () => text,
    stop,
  };
}
