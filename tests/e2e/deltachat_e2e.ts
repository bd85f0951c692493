/**
 * @module
 * End-to-end test with the client the product exists for: two real Delta
 * Chat cores (`deltachat-rpc-server` 2.57.0 from npm, iroh 0.35 inside) find
 * our relay through our IMAP METADATA proxy in front of a real Dovecot, and
 * exchange webxdc realtime data through that relay. Run it with
 * `deno task e2e` (root: it installs Debian packages if missing and creates
 * network namespaces).
 *
 * Steps (each a named `t.step`; the first failure ends the run and names it),
 * after removing what a crashed earlier run left behind:
 * 1. prerequisites: Debian packages (installed if missing), core version;
 * 2. network: two namespaces ("phones") that reach only the service address
 *    (see `topology.ts`), so iroh cannot hole-punch between them;
 * 3. mail server: Dovecot (IMAP, LMTP, SASL) on loopback and Postfix (SMTP,
 *    implicit TLS) on the service address, throwaway configs;
 * 4. our service: `main.ts --config` as a process, proxy mode in front of
 *    Dovecot, relay on the service address, metrics on loopback;
 * 5. both accounts configured through the proxy, `ImapInboxIdle` reached,
 *    and `get_info` shows our `/shared/comment` (core parsed our reply);
 * 6. a chat made by vCard exchange (no SecureJoin);
 * 7. a `.xdc` (built here) sent by alice arrives at bob as a webxdc;
 * 8. both advertise realtime; each receives the other's advertisement;
 * 9. realtime data alice → bob, then 10. bob → alice (resent every second
 *    until it arrives, as core's own tests do);
 * 11. proof from our relay: its metrics show two 0.35 clients authenticated
 *     with the derp upgrade and packet/byte counters grown by at least the
 *     data; its log shows each core's own iroh node id connecting from that
 *     core's namespace; its STUN counters grew and its log shows a Binding
 *     request answered for each core's namespace address (iroh 0.35 probes
 *     STUN on the relay host, UDP 3478);
 * 12. proof from core's own state: each core's iroh log (`RUST_LOG=info`)
 *     names our relay as its home relay and as the relay of the peer's node,
 *     never a direct path; each `dc.db` (read with the `sqlite3` CLI) lists
 *     the peer's node in `iroh_gossip_peers`, with our relay or NULL (core
 *     2.57 clears the column on `NeighborUp`, see {@link proveByCoreState}).
 *
 * Everything started is stopped and removed in `finally`, and also recorded
 * in a crash registry that the next run cleans (`topology.ts`). Set
 * `E2E_KEEP=1` to keep the temp dir (logs of every process) for a post-mortem,
 * `E2E_DUMP_METRICS=1` to print our service's metrics at step 11.
 *
 * Over ~450 lines on purpose: it is one scenario, twelve ordered steps that
 * share one `Run` record, read top to bottom like the list above; each step
 * is a short function, and what is not the scenario (network, mail server,
 * our service, the RPC client, the .xdc builder) already lives in its own
 * file next to it.
 */

import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { ensureDebPackages, freePort, type MailServer, startMailServer } from "../support/mail_server.ts";
import { checkIsolation, createNetwork, E2E_NET, Leftovers, removeNetwork, run } from "./topology.ts";
import { type DcEvent, DeltaChatRpc, RPC_SERVER_BIN } from "./rpc.ts";
import { type Service, startService } from "./service.ts";
import { makeXdc } from "./xdc.ts";

/** The core version the spec was checked against (npm pin in package.json). */
const CORE_VERSION = "2.57.0";
const TLS_DIR = new URL("../fixtures/imap_tls/", import.meta.url).pathname;
/** Bytes of realtime data per message: more than one QUIC packet, well under core's 128 KiB limit. */
const PAYLOAD_BYTES = 3000;
/** Resends of realtime data before giving up (one per second). */
const MAX_SENDS = 45;
/** Configure (IMAP + SMTP login through the proxy) and the first IDLE, ms. */
const CONFIGURE_TIMEOUT_MS = 60_000;
/** Mail delivery (SMTP → Postfix → LMTP → Dovecot → IDLE through the proxy), ms. */
const MAIL_TIMEOUT_MS = 45_000;

/** What the steps share. */
interface Run {
  tmp: string;
  leftovers: Leftovers;
  mail?: MailServer;
  service?: Service;
  relayUrl: string;
  comment: string;
  imapsPort: number;
  metricsPort: number;
  alice?: Account;
  bob?: Account;
  chatA?: number;
  msgA?: number;
  msgB?: number;
  before?: Map<string, number>;
  sent: { count: number; bytes: number };
}

/** One Delta Chat process with one account. */
interface Account {
  name: string;
  rpc: DeltaChatRpc;
  id: number;
  addr: string;
  password: string;
  accountsDir: string;
  /** Core's stderr (RUST_LOG) and event log. */
  logFile: string;
}

const SERVICE_ADDR = E2E_NET.serviceAddr;

Deno.test({
  name: "Delta Chat core finds our relay via IMAP METADATA and sends webxdc realtime data through it",
  // Steps share long-lived processes and streams; the finally block ends them all.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const started = performance.now();
    const timings: string[] = [];
    const step = async (name: string, fn: () => Promise<void>) => {
      const t0 = performance.now();
      const ok = await t.step({ name, fn, sanitizeOps: false, sanitizeResources: false, sanitizeExit: false });
      timings.push(`${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s  ${name}`);
      if (!ok) throw new Error(`E2E failed at step "${name}" (its error is printed above)`);
    };
    const leftovers = await Leftovers.claim();
    const tmp = await Deno.makeTempDir({ prefix: "deltachat-e2e-" });
    leftovers.addDir(tmp);
    // Dovecot's unprivileged processes must traverse into <tmp>/mail.
    await Deno.chmod(tmp, 0o755);
    const r: Run = {
      tmp,
      leftovers,
      relayUrl: "",
      comment: `deltachat e2e ${crypto.randomUUID().slice(0, 8)}`,
      imapsPort: 0,
      metricsPort: 0,
      sent: { count: 0, bytes: 0 },
    };
    let failed = true;
    try {
      await step("1. prerequisites: packages, Delta Chat core binary", () => prerequisites());
      await step("2. network: two isolated namespaces reaching only the service address", async () => {
        await createNetwork();
        await checkIsolation();
      });
      await step("3. mail server: Dovecot (IMAP, LMTP, SASL) + Postfix (SMTPS)", () => startMail(r));
      await step("4. our service: main.ts in proxy mode with relay and metrics", () => startOurService(r));
      await step("5. both accounts configured through our proxy, IDLE, our METADATA parsed", () => configure(r));
      await step("6. chat by vCard exchange", () => makeChat(r));
      await step("7. webxdc app sent by alice arrives at bob", () => sendWebxdc(r));
      await step("8. realtime advertisements exchanged", () => advertise(r));
      await step("9. realtime data alice -> bob", () => realtime(r, r.alice!, r.msgA!, r.bob!, r.msgB!));
      await step("10. realtime data bob -> alice", () => realtime(r, r.bob!, r.msgB!, r.alice!, r.msgA!));
      await step(
        "11. proof: our relay's metrics and log show both cores, the data and their STUN requests",
        () => proveByMetricsAndRelayLog(r),
      );
      await step("12. proof: core's own state names our relay (iroh log, dc.db)", () => proveByCoreState(r));
      failed = false;
    } finally {
      const t0 = performance.now();
      await cleanup(r, failed);
      timings.push(`${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s  cleanup`);
      console.log(
        `e2e timings:\n${timings.join("\n")}\n${
          ((performance.now() - started) / 1000).toFixed(1).padStart(6)
        } s  total`,
      );
    }
  },
});

async function prerequisites(): Promise<void> {
  // sqlite3 reads core's dc.db in step 12; the mail packages are checked again by startMailServer.
  await ensureDebPackages(["dovecot-imapd", "dovecot-lmtpd", "postfix", "sqlite3"]);
  const v = await run(RPC_SERVER_BIN, ["--version"]);
  assert.equal(v.code, 0, `${RPC_SERVER_BIN} --version failed: ${v.out}`);
  assert.equal(v.out, CORE_VERSION, `deltachat-rpc-server is ${v.out}, the test expects ${CORE_VERSION} (iroh 0.35)`);
}

async function startMail(r: Run): Promise<void> {
  r.mail = await startMailServer({
    dir: `${r.tmp}/mail`,
    users: [
      { name: "alice@example.org", password: `alice-${crypto.randomUUID()}` },
      { name: "bob@example.org", password: `bob-${crypto.randomUUID()}` },
    ],
    tls: { certPath: `${TLS_DIR}cert.pem`, keyPath: `${TLS_DIR}key.pem` },
    smtp: { hostname: SERVICE_ADDR },
    onSpawn: (pid, what) => r.leftovers.addPid(pid, what),
  });
}

async function startOurService(r: Run): Promise<void> {
  const relayPort = freePort(SERVICE_ADDR);
  r.imapsPort = freePort(SERVICE_ADDR);
  r.metricsPort = freePort();
  r.relayUrl = `http://${SERVICE_ADDR}:${relayPort}/`;
  r.service = await startService({
    dir: r.tmp,
    metrics: { hostname: "127.0.0.1", port: r.metricsPort },
    onSpawn: (pid) => r.leftovers.addPid(pid, "main.ts"),
    toml: `# written by tests/e2e/deltachat_e2e.ts
enable_relay = true
http_bind_addr = "${SERVICE_ADDR}:${relayPort}"
# iroh 0.35 probes STUN on the relay host's port 3478 (spec §8), whatever the relay port.
enable_stun = true
stun_bind_addr = "${SERVICE_ADDR}:3478"
enable_metrics = true
metrics_bind_addr = "127.0.0.1:${r.metricsPort}"
access = "everyone"

[imap]
mode = "proxy"
tls_bind_addr = "${SERVICE_ADDR}:${r.imapsPort}"
cert_path = "${TLS_DIR}cert.pem"
key_path = "${TLS_DIR}key.pem"
iroh_relay_url = "${r.relayUrl}"
comment = "${r.comment}"
login = "upstream"

[imap.upstream]
host = "127.0.0.1"
port = ${r.mail!.imapPort}
tls = false
`,
  });
  const m = await r.service.metrics();
  assert.equal(m.get('relayserver_clients{generation="0.35"}'), 0, "metrics: no 0.35 client before the test");
}

async function startAccount(r: Run, name: string, ns: string): Promise<Account> {
  const user = r.mail!.users.find((u) => u.name.startsWith(`${name}@`))!;
  const accountsDir = `${r.tmp}/dc-${name}`;
  const logFile = `${r.tmp}/dc-${name}.log`;
  const rpc = await DeltaChatRpc.start({
    label: name,
    netns: ns,
    accountsDir,
    logFile,
    // iroh at info logs the home relay ("home is now relay …"), useful in post-mortems.
    rustLog: "info",
    onSpawn: (pid) => r.leftovers.addPid(pid, `deltachat-rpc-server ${name}`),
  });
  const account: Account = { name, rpc, id: 0, addr: user.name, password: user.password, accountsDir, logFile };
  const info = await rpc.call<Record<string, string>>("get_system_info");
  assert.equal(info.deltachat_core_version, `v${CORE_VERSION}`, `${name}: core version`);
  account.id = await rpc.call<number>("add_account");
  return account;
}

async function configure(r: Run): Promise<void> {
  [r.alice, r.bob] = await Promise.all([
    startAccount(r, "alice", E2E_NET.peers[0].ns),
    startAccount(r, "bob", E2E_NET.peers[1].ns),
  ]);
  await Promise.all([r.alice, r.bob].map(async (a) => {
    const since = a.rpc.mark();
    await a.rpc.call("add_or_update_transport", [a.id, {
      addr: a.addr,
      password: a.password,
      imapServer: SERVICE_ADDR,
      imapPort: r.imapsPort,
      imapSecurity: "ssl",
      imapUser: null,
      imapFolder: null,
      smtpServer: SERVICE_ADDR,
      smtpPort: r.mail!.smtp!.port,
      smtpSecurity: "ssl",
      smtpUser: null,
      smtpPassword: null,
      certificateChecks: "acceptInvalidCertificates",
    }], { timeoutMs: CONFIGURE_TIMEOUT_MS });
    await a.rpc.call("start_io", [a.id]);
    // GETMETADATA precedes SELECT and IDLE (spec §2.2), so after this event core holds our relay URL.
    await a.rpc.waitEvent((e) => e.contextId === a.id && e.event.kind === "ImapInboxIdle", {
      since,
      timeoutMs: CONFIGURE_TIMEOUT_MS,
      what: "ImapInboxIdle",
    });
    const info = await a.rpc.call<Record<string, string>>("get_info", [a.id]);
    // get_info shows the value Debug-quoted (spec §2.5).
    assert.equal(
      info.imap_server_comment,
      JSON.stringify(r.comment),
      `${a.name}: get_info.imap_server_comment is not our /shared/comment (core did not use our METADATA reply)`,
    );
  }));
  const m = await r.service!.metrics();
  const gm = m.get("imap_getmetadata_total") ?? 0;
  assert.ok(gm >= 2, `our IMAP proxy answered ${gm} GETMETADATA, expected one per account at least`);
  // Core's sessions passed through without a refusal anywhere on the way.
  for (const k of ["imap_logins_failed_total", "imap_bad_commands_total", "imap_upstream_errors_total"]) {
    assert.equal(m.get(k), 0, `${k} should be 0 after core's sessions`);
  }
}

async function makeChat(r: Run): Promise<void> {
  const { alice, bob } = r as Required<Run>;
  const vcard = await bob.rpc.call<string>("make_vcard", [bob.id, [1]]); // 1 = the self contact
  assert.match(vcard, /BEGIN:VCARD/i, "bob's vCard");
  const ids = await alice.rpc.call<number[]>("import_vcard_contents", [alice.id, vcard]);
  assert.equal(ids.length, 1, `alice imported ${ids.length} contacts from bob's vCard`);
  r.chatA = await alice.rpc.call<number>("create_chat_by_contact_id", [alice.id, ids[0]]);
}

async function sendWebxdc(r: Run): Promise<void> {
  const { alice, bob } = r as Required<Run>;
  const file = `${r.tmp}/e2e-app.xdc`;
  await Deno.writeFile(file, makeXdc("Relay e2e"));
  const since = bob.rpc.mark();
  r.msgA = await alice.rpc.call<number>("send_msg", [alice.id, r.chatA, {
    text: "realtime test",
    html: null,
    viewtype: "Webxdc",
    file,
    filename: "e2e-app.xdc",
    location: null,
    overrideSenderName: null,
    quotedMessageId: null,
    quotedText: null,
  }]);
  const ev = await bob.rpc.waitEvent((e) => e.contextId === bob.id && e.event.kind === "IncomingMsg", {
    since,
    timeoutMs: MAIL_TIMEOUT_MS,
    what: "IncomingMsg with the webxdc (SMTP -> Postfix -> Dovecot -> our proxy)",
  });
  r.msgB = ev.event.msgId as number;
  const msg = await bob.rpc.call<{ viewType: string; chatId: number }>("get_message", [bob.id, r.msgB]);
  assert.equal(msg.viewType, "Webxdc", "bob's incoming message is the webxdc");
  // A first message from a new contact is a contact request; accepting lets bob's core send into the chat.
  await bob.rpc.call("accept_chat", [bob.id, msg.chatId]);
}

async function advertise(r: Run): Promise<void> {
  const { alice, bob } = r as Required<Run>;
  const sinceA = alice.rpc.mark();
  const sinceB = bob.rpc.mark();
  // This creates each core's iroh endpoint, with our relay as its only relay (spec §2.6).
  await alice.rpc.call("send_webxdc_realtime_advertisement", [alice.id, r.msgA]);
  await bob.rpc.call("send_webxdc_realtime_advertisement", [bob.id, r.msgB]);
  const got = (a: Account, msgId: number, since: number) =>
    a.rpc.waitEvent(
      (e) => e.contextId === a.id && e.event.kind === "WebxdcRealtimeAdvertisementReceived" && e.event.msgId === msgId,
      { since, timeoutMs: MAIL_TIMEOUT_MS, what: "WebxdcRealtimeAdvertisementReceived" },
    );
  await Promise.all([got(alice, r.msgA!, sinceA), got(bob, r.msgB!, sinceB)]);
}

/** Distinct, recognisable bytes for each direction. */
function payload(from: string): number[] {
  const head = new TextEncoder().encode(`e2e realtime from ${from} ${crypto.randomUUID()} `);
  return Array.from({ length: PAYLOAD_BYTES }, (_, i) => i < head.length ? head[i]! : (i * 31 + 7) & 0xff);
}

function sameBytes(a: unknown, b: number[]): boolean {
  return Array.isArray(a) && a.length === b.length && a.every((x, i) => x === b[i]);
}

async function realtime(r: Run, from: Account, fromMsg: number, to: Account, toMsg: number): Promise<void> {
  r.before ??= await r.service!.metrics();
  const data = payload(from.name);
  const since = to.rpc.mark();
  const arrived = (e: DcEvent) =>
    e.contextId === to.id && e.event.kind === "WebxdcRealtimeData" && e.event.msgId === toMsg &&
    sameBytes(e.event.data, data);
  for (let i = 0; i < MAX_SENDS; i++) {
    // Gossip drops what is sent before the peers are connected, so resend until it arrives (as core's tests do).
    await from.rpc.call("send_webxdc_realtime_data", [from.id, fromMsg, data]);
    r.sent.count++;
    r.sent.bytes += data.length;
    if (await to.rpc.nextEvent(arrived, { since, timeoutMs: 1_000 })) return;
  }
  throw new Error(
    `${to.name} got no WebxdcRealtimeData from ${from.name} after ${MAX_SENDS} sends\n${from.rpc.diagnostics()}\n${to.rpc.diagnostics()}\n--- our service\n${
      r.service!.logTail()
    }`,
  );
}

async function proveByMetrics(r: Run): Promise<void> {
  const after = await r.service!.metrics();
  if (Deno.env.get("E2E_DUMP_METRICS") === "1") console.log([...after].map(([k, v]) => `${k} ${v}`).join("\n"));
  const before = r.before!;
  const v = (m: Map<string, number>, k: string) => m.get(k) ?? 0;
  const delta = (k: string) => v(after, k) - v(before, k);
  const show = (k: string) => `${k} ${v(before, k)} -> ${v(after, k)}`;
  assert.equal(v(after, 'relayserver_clients{generation="0.35"}'), 2, "two 0.35 clients connected now");
  assert.equal(v(after, 'relayserver_clients{generation="1.x"}'), 0, "no 1.x client");
  assert.ok(v(after, "relayserver_accepts_total") >= 2, `${show("relayserver_accepts_total")}: two authenticated`);
  assert.equal(v(after, "relayserver_auth_failures_total"), 0, "no handshake was refused");
  assert.ok(
    v(after, "relayserver_relay_accepts_total") >= 2,
    `${show("relayserver_relay_accepts_total")}: both used the 0.35 "iroh derp http" upgrade`,
  );
  // One message each way arrived; each was at least PAYLOAD_BYTES of (encrypted, hence larger) datagrams.
  const minBytes = 2 * PAYLOAD_BYTES;
  assert.ok(
    delta("relayserver_bytes_sent_total") >= minBytes,
    `${show("relayserver_bytes_sent_total")} < +${minBytes}`,
  );
  assert.ok(
    delta("relayserver_bytes_recv_total") >= minBytes,
    `${show("relayserver_bytes_recv_total")} < +${minBytes}`,
  );
  assert.ok(delta("relayserver_send_packets_sent_total") >= 2, show("relayserver_send_packets_sent_total"));
  console.log(
    `relay metrics during realtime (${r.sent.count} sends, ${r.sent.bytes} payload bytes): ${
      [
        "relayserver_send_packets_sent_total",
        "relayserver_bytes_sent_total",
        "relayserver_send_packets_dropped_total",
        "relayserver_accepts_total",
      ].map(show).join(", ")
    }`,
  );
}

/** `dc.db` of the (only) account in an accounts dir, found via `accounts.toml`. */
async function dcDbPath(accountsDir: string): Promise<string> {
  const toml = parseToml(await Deno.readTextFile(`${accountsDir}/accounts.toml`)) as {
    accounts?: { id: number; dir: string }[];
  };
  const dir = toml.accounts?.[0]?.dir;
  assert.ok(dir, `no account in ${accountsDir}/accounts.toml`);
  return dir.startsWith("/") ? `${dir}/dc.db` : `${accountsDir}/${dir}/dc.db`;
}

/** Core's stderr (RUST_LOG output) without ANSI colours. */
async function coreLog(a: Account): Promise<string> {
  // deno-lint-ignore no-control-regex -- ANSI escape sequences start with ESC
  return (await Deno.readTextFile(a.logFile)).replace(/\x1b\[[0-9;]*m/g, "");
}

/** The 10-hex-digit short node id iroh logs for its own endpoint (`ep{me=…}`). */
function ownNodeId(log: string, who: string): string {
  const ids = new Set([...log.matchAll(/\bep\{me=([0-9a-f]{10})\}/g)].map((m) => m[1]!));
  assert.equal(
    ids.size,
    1,
    `${who}: expected one iroh endpoint id in core's log, found ${[...ids].join(", ") || "none"}`,
  );
  return [...ids][0]!;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function proveByMetricsAndRelayLog(r: Run): Promise<void> {
  await proveByMetrics(r);
  await proveStun(r);
  // Tie the relay's view to core's: each core's own iroh node id connected from that core's namespace.
  const relayLog = await Deno.readTextFile(r.service!.logFile);
  for (const [i, a] of [r.alice!, r.bob!].entries()) {
    const id = ownNodeId(await coreLog(a), a.name);
    const from = E2E_NET.peers[i]!.nsAddr;
    assert.match(
      relayLog,
      new RegExp(`conn \\d+ ${id} \\(0\\.35 derp\\): connected from ${escapeRe(from)}:`),
      `our relay's log has no 0.35 connection of ${a.name}'s node ${id} from ${from}`,
    );
  }
}

/** Both cores asked our STUN server for their address (iroh 0.35's net report), and got answers. */
async function proveStun(r: Run): Promise<void> {
  const m = await r.service!.metrics();
  const answered = (m.get("stun_ipv4_success_total") ?? 0) + (m.get("stun_ipv6_success_total") ?? 0);
  const relayLog = await Deno.readTextFile(r.service!.logFile);
  const fromNs = E2E_NET.peers.map((p) => {
    const n = relayLog.match(new RegExp(`STUN: answered ${escapeRe(p.nsAddr)}:\\d+ \\(rfc5389\\)`, "g"))?.length ?? 0;
    return `${p.ns} (${p.nsAddr}): ${n}`;
  });
  console.log(
    `STUN: requests ${m.get("stun_requests_total") ?? 0}, answered ${answered}, bad ${
      m.get("stun_bad_requests_total") ?? 0
    }, rate-limited ${m.get("stun_ratelimited_total") ?? 0}; answered per namespace: ${fromNs.join(", ")}`,
  );
  for (const [i, p] of E2E_NET.peers.entries()) {
    assert.match(
      relayLog,
      new RegExp(`STUN: answered ${escapeRe(p.nsAddr)}:\\d+ \\(rfc5389\\)`),
      `${[r.alice!, r.bob!][i]!.name}'s core sent no STUN Binding request to our STUN server (${SERVICE_ADDR}:3478)`,
    );
  }
  assert.ok(answered >= 2, `stun_ipv4_success_total + stun_ipv6_success_total = ${answered}, expected one per core`);
}

/**
 * Core's own view, from two sources: its iroh log (RUST_LOG=info) and its
 * database. Core 2.57 overwrites `iroh_gossip_peers.relay_server` with NULL
 * whenever gossip reports the peer as a neighbour (`NeighborUp`,
 * src/peer_channels.rs), so the column keeps our URL only if the peer's
 * advertisement was processed last: the database check accepts NULL and
 * requires that any relay it names is ours, and the log carries the proof.
 */
async function proveByCoreState(r: Run): Promise<void> {
  const pairs = [[r.alice!, r.bob!], [r.bob!, r.alice!]] as const;
  const ids = new Map<Account, string>();
  for (const a of [r.alice!, r.bob!]) ids.set(a, ownNodeId(await coreLog(a), a.name));
  const url = escapeRe(r.relayUrl);
  let dbRowsWithRelay = 0;
  for (const [a, peer] of pairs) {
    const log = await coreLog(a);
    const peerId = ids.get(peer)!;
    assert.match(log, new RegExp(`home is now relay ${url}, was None`), `${a.name}: iroh's home relay is not ours`);
    assert.match(
      log,
      new RegExp(`inserting new node in NodeMap node=${peerId} relay_url=Some\\(RelayUrl\\("${url}"\\)\\)`),
      `${a.name}: core's iroh did not learn ${peer.name}'s node ${peerId} with our relay`,
    );
    const direct = /new connection type typ=direct[^\n]*/.exec(log);
    assert.equal(direct, null, `${a.name}: iroh found a direct path, the topology leaks: ${direct?.[0]}`);

    const db = await dcDbPath(a.accountsDir);
    const q = await run("sqlite3", [
      "-readonly",
      "-json",
      db,
      // The 'static_string' row is core's topic stub (PUBLIC_KEY_STUB), not a peer.
      "SELECT lower(hex(public_key)) AS key, relay_server FROM iroh_gossip_peers WHERE public_key != CAST('static_string' AS BLOB)",
    ]);
    assert.equal(q.code, 0, `sqlite3 on ${db}: ${q.out}`);
    const rows = JSON.parse(q.out || "[]") as { key: string; relay_server: string | null }[];
    assert.ok(
      rows.some((row) => row.key.startsWith(peerId)),
      `${a.name}: iroh_gossip_peers lacks ${peer.name}'s node ${peerId}: ${JSON.stringify(rows)}`,
    );
    for (const row of rows) {
      if (row.relay_server === null) continue;
      assert.equal(row.relay_server, r.relayUrl, `${a.name}: iroh_gossip_peers names another relay`);
      dbRowsWithRelay++;
    }
  }
  console.log(
    `core state: both home relays and both peers' relays are ${r.relayUrl}; ` +
      `iroh_gossip_peers rows naming it: ${dbRowsWithRelay} of 2 (others NULL after NeighborUp)`,
  );
}

async function cleanup(r: Run, failed: boolean): Promise<void> {
  const errors: string[] = [];
  const attempt = async (what: string, f: () => Promise<void> | undefined) => {
    try {
      await f();
    } catch (e) {
      errors.push(`${what}: ${(e as Error).message}`);
    }
  };
  await Promise.all([attempt("alice", () => r.alice?.rpc.stop()), attempt("bob", () => r.bob?.rpc.stop())]);
  await attempt("service", () => r.service?.stop());
  await attempt("mail server", () => r.mail?.stop());
  await attempt("network", () => removeNetwork());
  if (Deno.env.get("E2E_KEEP") === "1") {
    console.log(`E2E_KEEP=1: logs and state kept in ${r.tmp}`);
  } else {
    await attempt("temp dir", () => Deno.remove(r.tmp, { recursive: true }));
  }
  await attempt("crash registry", () => r.leftovers.release());
  if (errors.length) {
    const msg = `E2E cleanup problems:\n${errors.join("\n")}`;
    if (failed) console.error(msg);
    else throw new Error(msg);
  }
}
